// The web UI in a real browser (Debian's Chromium, driven by playwright-core): walks the demo
// loop as a person would, with the keyboard where it matters, and saves a screenshot of each
// page. Usage: node browser.js URL TOKEN SCREENSHOT_DIR LIVE_JOB_ID
// Prints one JSON line per check; exits 1 on the first that fails.
"use strict";
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const [url, token, shots, liveJob] = process.argv.slice(2);

function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok: !!ok, detail: detail || "" }));
  if (!ok) throw new Error(`${name}: ${detail || "failed"}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

    // No page without a session.
    await page.goto(url + "/");
    check("redirected to sign in", page.url().includes("/login"), page.url());
    await shot("01-login");
    await page.fill("#token", "not-a-token");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".problem");
    check("a wrong token is refused", (await page.textContent(".problem")).includes("not valid"));
    await page.fill("#token", token);
    await page.keyboard.press("Enter");
    await page.waitForSelector("h1:has-text('Projects')");
    check("signed in", page.url() === url + "/", page.url());
    check("projects show the week's heals", (await page.textContent("section:has(#p-sample) .heal-summary")).includes("1 fixed"));
    await shot("02-projects");

    // The failed pipeline and its place in the loop.
    await page.click("a[href='/projects/sample']");
    await page.waitForSelector("h2:has-text('Heals')");
    await page.click("tr:has-text('main') a.status");
    await page.waitForSelector("h2:has-text('The loop')");
    const chain = await page.textContent(".chain");
    check("the loop is one timeline", ["CI", "Self-heal", "CI on the heal branch", "Self-heal pull request"].every((s) => chain.includes(s)), chain);
    check("status is in words", (await page.textContent("#pipeline-status")).includes("failed"));
    await shot("03-pipeline");

    // The failed job: the report first, lines linked.
    await page.click(".block a:has-text('cargo fmt')");
    await page.waitForSelector("#why");
    check("the failure report leads", (await page.textContent(".failure")).includes("lint format"));
    await page.click(".excerpt a >> nth=1");
    check("an excerpt line links to the log", /#L\d+$/.test(page.url()), page.url());
    await shot("04-job");

    // A running job's log streams in.
    await page.goto(`${url}/jobs/${liveJob}`);
    await page.waitForFunction(() => (document.getElementById("live-lines") || { textContent: "" }).textContent.includes("tick 5"), null, { timeout: 30000 });
    check("a running job's log streams", true);
    await shot("05-live-log");

    // The heal: its diff and its guards.
    await page.goto(url + "/projects/sample");
    await page.waitForSelector("h2:has-text('Heals')");
    await page.click("a[href^='/heals/']");
    await page.waitForSelector("table.diff");
    check("the heal shows the formatter's diff", (await page.textContent("table.diff")).includes("+pub fn add(a: i32, b: i32) -> i32 {"));
    check("the guards passed", (await page.textContent("main")).includes("passed every guard"));
    await shot("06-heal");

    // The pull request: merged with the keyboard.
    await page.goto(url + "/projects/sample/pulls/1");
    check("the head's CI passed", (await page.textContent("main")).includes("passed"));
    await shot("07-pull-request");
    await page.focus("#merge");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".notice");
    check("merged", (await page.textContent(".notice")).includes("Merged into main"));
    await shot("08-merged");

    // A phone's width: nothing spills sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(url + "/");
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check("fits a phone", wide <= 392, `scrollWidth ${wide}`);
    await shot("09-phone");

    // Signing out ends the session.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.click("text=Sign out");
    await page.goto(url + "/projects/sample");
    check("signed out", page.url().includes("/login"), page.url());
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});

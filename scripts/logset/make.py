#!/usr/bin/env python3
"""Builds Salve's own labelled log set: runs each case of cases.py (real tools on small failing
projects) inside the frame of its CI (frames.py), and writes the log, its label (the lines
between the case's hand-chosen first and last line) and an index, in the layout the shared
scorer reads.

Usage: scripts/logset/make.py [OUT] [CASE ...]   (OUT defaults to crates/logs/tests/logset)
Needs the tools the cases run: cargo, go, python3 with pytest/ruff/black, node/npm/yarnpkg,
prettier, javac and mvn (Debian's maven repository, offline), ruby with rspec/rubocop/rake, gcc,
make, cmake, shellcheck. The committed set was made with them; CI only reads it."""
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import CASES  # noqa: E402
from frames import FRAMES, semaphore_text  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

POM = """<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>demo</groupId><artifactId>demo</artifactId><version>1.0</version>
  <properties><maven.compiler.source>17</maven.compiler.source><maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <dependencies><dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13.2</version><scope>test</scope></dependency></dependencies>
  <build><plugins>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-resources-plugin</artifactId><version>3.3.0</version></plugin>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-compiler-plugin</artifactId><version>3.10.1</version></plugin>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-surefire-plugin</artifactId><version>2.22.3</version></plugin>
  </plugins></build>
</project>
"""


def label(text, first, last, after):
    """The lines from the first holding `first` (at or after offset `after`) to the next holding
    `last` (a `last` ending in a line break must end its line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    pos, start = 0, None
    for i, raw in enumerate(lines):
        line = ANSI.sub("", raw)
        if start is None and pos >= after and first in line:
            start = i
        if start is not None:
            hit = line.endswith(last[:-1]) if last.endswith("\n") else last in line
            if hit:
                return "\n".join(lines[start:i + 1]) + "\n"
        pos += len(raw) + 1
    raise SystemExit(f"label not found: {first!r} .. {last!r}")


def main():
    args = sys.argv[1:]
    out = args.pop(0) if args and not args[0] in {c["id"] for c in CASES} else "crates/logs/tests/logset"
    only = set(args)
    os.makedirs(f"{out}/logs", exist_ok=True)
    os.makedirs(f"{out}/labels", exist_ok=True)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "RUSTUP_HOME", "CARGO_HOME", "PYENV_ROOT") if k in os.environ}
    env.update(CI="true", LANG="C.UTF-8", npm_config_update_notifier="false")
    index = {}
    idx_path = f"{out}/labels/index.jsonl"
    if os.path.exists(idx_path):
        for line in open(idx_path):
            if line.strip():
                rec = json.loads(line)
                index[rec["id"]] = rec
    failed = []
    for case in CASES:
        if only and case["id"] not in only:
            continue
        work = f"/tmp/salve-logset/{case['id']}"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        files = dict(case["files"])
        if case.get("maven"):
            files["pom.xml"] = POM
        for path, body in files.items():
            os.makedirs(os.path.dirname(f"{work}/{path}") or work, exist_ok=True)
            with open(f"{work}/{path}", "w") as f:
                f.write(body)
        frame = FRAMES[case["ci"]](work, env)
        try:
            log = frame.job(case["setup"], case["script"], case["after"])
            text = semaphore_text(log) if case["ci"] == "semaphore" else log
            failing = frame.failed_cmd or case["script"][0]
            # Where the failing command starts: its CI's marker, else its first mention.
            starts = [text.find(m + failing) for m in ("$ ", "+ ", "Run ", "pipefail\n", '"')]
            starts = [i for i in starts if i >= 0] or [text.find(failing)]
            chunk = label(text, *case["label"], after=min(starts))
        except SystemExit as e:
            failed.append(case["id"])
            print(f"!! {case['id']}: {e}\n{''.join(frame.out)[-3000:]}")
            continue
        with open(f"{out}/logs/{case['id']}.log", "w") as f:
            f.write(log)
        with open(f"{out}/labels/{case['id']}.txt", "w") as f:
            f.write(chunk)
        index[case["id"]] = dict(id=case["id"], ecosystem=case["eco"], ci=case["ci"],
                                 failing_command=frame.failed_cmd or case["script"][-1])
        print(f"== {case['id']} ({case['ci']}, {len(log)} bytes, label {chunk.count(chr(10))} lines)")
        print(chunk, end="")
    with open(idx_path, "w") as f:
        for i in sorted(index):
            f.write(json.dumps(index[i]) + "\n")
    if failed:
        raise SystemExit(f"cases that did not fail as labelled: {' '.join(failed)}")


if __name__ == "__main__":
    main()

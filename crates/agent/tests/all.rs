//! The agent crate: the three wire formats round-trip a tool call, and the file tools stay in
//! their folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use salve_agent::files;
use salve_agent::model::{Api, Message, Model, ModelConfig, ToolCall, ToolSpec, parse_reply};
use serde_json::json;

fn model(api: Api) -> Model {
    Model::new(ModelConfig {
        api,
        url: "http://127.0.0.1:9/v1".into(),
        model: "m".into(),
        key: None,
        max_output_tokens: 100,
    })
    .unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::User("fix it".into()),
        Message::Assistant {
            text: String::new(),
            calls: vec![ToolCall { id: "c1".into(), name: "read_file".into(), arguments: json!({"path": "a.rs"}) }],
        },
        Message::Tool { call_id: "c1".into(), name: "read_file".into(), output: "1 | fn a() {}".into() },
    ]
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec { name: "read_file", description: "read", parameters: json!({"type": "object"}) }]
}

#[test]
fn each_api_gets_its_own_shape() {
    let chat = model(Api::Chat).body("sys", &conversation(), &tools());
    assert_eq!(chat["messages"][0], json!({"role": "system", "content": "sys"}));
    assert_eq!(chat["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"path\":\"a.rs\"}");
    assert_eq!(chat["messages"][3], json!({"role": "tool", "tool_call_id": "c1", "content": "1 | fn a() {}"}));
    assert_eq!(chat["tools"][0]["function"]["name"], "read_file");
    assert_eq!(chat["max_tokens"], 100, "an OpenAI-compatible server");
    let openai = Model::new(ModelConfig {
        api: Api::Chat,
        url: "https://api.openai.com/v1".into(),
        model: "m".into(),
        key: None,
        max_output_tokens: 100,
    })
    .unwrap()
    .body("sys", &conversation(), &tools());
    assert_eq!((openai["max_completion_tokens"].as_u64(), openai.get("max_tokens")), (Some(100), None));

    let responses = model(Api::Responses).body("sys", &conversation(), &tools());
    assert_eq!(responses["instructions"], "sys");
    assert_eq!(responses["store"], false);
    assert_eq!(responses["input"][1]["type"], "function_call");
    assert_eq!(
        responses["input"][2],
        json!({"type": "function_call_output", "call_id": "c1", "output": "1 | fn a() {}"})
    );
    assert_eq!(
        responses["tools"][0],
        json!({"type": "function", "name": "read_file", "description": "read", "parameters": {"type": "object"}})
    );

    let anthropic = model(Api::Anthropic).body("sys", &conversation(), &tools());
    assert_eq!(anthropic["system"], "sys");
    assert_eq!(
        anthropic["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "c1", "name": "read_file", "input": {"path": "a.rs"}})
    );
    assert_eq!(anthropic["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(anthropic["tools"][0]["input_schema"], json!({"type": "object"}));
}

#[test]
fn replies_are_read_in_each_shape() {
    let r = parse_reply(
        Api::Responses,
        &json!({"output": [{"type": "reasoning"}, {"type": "function_call", "call_id": "k", "name": "search", "arguments": "{\"pattern\":\"x\"}"},
                           {"type": "message", "content": [{"type": "output_text", "text": "looking"}]}],
                "usage": {"input_tokens": 7, "output_tokens": 3}}),
    )
    .unwrap();
    assert_eq!(
        (r.text.as_str(), r.calls[0].name.as_str(), r.calls[0].arguments["pattern"].as_str()),
        ("looking", "search", Some("x"))
    );
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (7, 3));
    let r = parse_reply(Api::Chat, &json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "a", "function": {"name": "run", "arguments": "not json"}}]}}]})).unwrap();
    assert_eq!(r.calls[0].arguments, json!({"_unparsed": "not json"}));
    assert!(parse_reply(Api::Chat, &json!({"error": "x"})).is_err());
}

#[test]
fn file_tools_stay_in_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/a.rs"), "fn a() {}\nfn b() {}\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
    let call = |name: &str, args: serde_json::Value| files::call(root, name, &args).unwrap();
    assert_eq!(call("read_file", json!({"path": "src/a.rs", "start_line": 2})).unwrap(), "    2 | fn b() {}\n");
    assert_eq!(call("search", json!({"pattern": "fn b"})).unwrap(), "src/a.rs:2: fn b() {}");
    assert!(
        call("replace_in_file", json!({"path": "src/a.rs", "old": "fn", "new": "pub fn"}))
            .unwrap_err()
            .contains("occurs 2 times")
    );
    call("replace_in_file", json!({"path": "src/a.rs", "old": "fn b", "new": "fn c"})).unwrap();
    for bad in ["../x", "/etc/passwd", "out/passwd", ".git/config", "src/../../x"] {
        let e = call("read_file", json!({"path": bad})).unwrap_err();
        assert!(e.contains("outside") || e.contains("link") || e.contains(".git"), "{bad}: {e}");
        assert!(call("write_file", json!({"path": bad, "content": "x"})).is_err(), "{bad}");
    }
    assert!(files::call(root, "no_such_tool", &json!({})).is_none());
}

//! OpenAI's Responses API (`/v1/responses`) over the mock engine: the documented response
//! object and output items, the event stream (`event:` lines, `sequence_number`, order,
//! argument deltas concatenating to the final `arguments`), the response store
//! (`previous_response_id`, `GET`/`DELETE /v1/responses/{id}`, 404 and 400 for unknown ids),
//! errors in OpenAI's shape, the queue's 429 and cancellation.

mod server_support;

use futures::StreamExt;
use serde_json::{json, Value};
use server_support::{assert_error_shape, keys, names, sse_events, start, Config, MODEL};

fn tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "description": "Current weather of a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"type": "function", "name": "get_temperature", "description": "Temperature of a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": false}
    ])
}

fn body(input: Value) -> Value {
    json!({"model": MODEL, "input": input})
}

fn check_response(v: &Value) {
    for key in [
        "id",
        "object",
        "created_at",
        "status",
        "error",
        "incomplete_details",
        "instructions",
        "max_output_tokens",
        "model",
        "output",
        "parallel_tool_calls",
        "previous_response_id",
        "reasoning",
        "store",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "truncation",
        "usage",
        "user",
        "metadata",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], MODEL);
    let u = &v["usage"];
    assert_eq!(
        keys(u),
        names(&[
            "input_tokens",
            "input_tokens_details",
            "output_tokens",
            "output_tokens_details",
            "total_tokens"
        ])
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap())
    );
    assert!(u["input_tokens_details"]["cached_tokens"].is_u64());
    for item in v["output"].as_array().unwrap() {
        match item["type"].as_str().unwrap() {
            "message" => {
                assert_eq!(
                    keys(item),
                    names(&["id", "type", "status", "role", "content"])
                );
                assert!(item["id"].as_str().unwrap().starts_with("msg_"));
                assert_eq!(item["role"], "assistant");
                for part in item["content"].as_array().unwrap() {
                    assert_eq!(part["type"], "output_text");
                    assert!(part["text"].is_string() && part["annotations"].is_array());
                }
            }
            "reasoning" => {
                assert_eq!(
                    keys(item),
                    names(&["id", "type", "status", "summary", "content"])
                );
                assert!(item["id"].as_str().unwrap().starts_with("rs_"));
                for part in item["content"].as_array().unwrap() {
                    assert_eq!(keys(part), names(&["type", "text"]));
                    assert_eq!(part["type"], "reasoning_text");
                }
            }
            "function_call" => {
                assert_eq!(
                    keys(item),
                    names(&["id", "type", "status", "call_id", "name", "arguments"])
                );
                assert!(item["id"].as_str().unwrap().starts_with("fc_"));
                let args: Value =
                    serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
                assert!(args.is_object());
            }
            other => panic!("unexpected item {other}"),
        }
    }
}

#[tokio::test]
async fn a_text_answer_is_a_completed_response() {
    let s = start(Config::default()).await;
    for path in ["/v1/responses", "/responses"] {
        let mut b = body(json!("hello there"));
        b["instructions"] = json!("Be brief.");
        b["metadata"] = json!({"k": "v"});
        let (status, v) = s.post_json(path, &b).await;
        assert_eq!(status, 200, "{v}");
        check_response(&v);
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["output"][0]["content"][0]["text"],
            "Hello! You said: hello there"
        );
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["metadata"], json!({"k": "v"}));
        assert_eq!(v["store"], true);
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["text"], json!({"format": {"type": "text"}}));
        assert_eq!(v["reasoning"], json!({"effort": null, "summary": null}));
    }
    // The reasoning settings asked for are echoed, as the hosted API does.
    let mut b = body(json!("hello"));
    b["reasoning"] = json!({"effort": "low", "summary": "auto"});
    let (status, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reasoning"], json!({"effort": "low", "summary": "auto"}));
    let mut b = body(json!("[[tokens=50]]"));
    b["max_output_tokens"] = json!(3);
    let (_, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
}

#[tokio::test]
async fn function_calls_and_their_outputs() {
    let s = start(Config::default()).await;
    let mut b = body(json!("weather and temperature in Paris"));
    b["tools"] = tools();
    let (status, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v);
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{v}");
    assert_eq!(out[0]["name"], "get_weather");
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(
        v["tools"][0]["strict"], true,
        "function tools default to strict"
    );
    assert_eq!(v["tools"][1]["strict"], false);
    // The client sends the calls back with their outputs.
    let mut input = vec![json!({"role": "user", "content": "weather and temperature in Paris"})];
    input.extend(out.iter().cloned());
    for (call, result) in out.iter().zip(["sunny", "21 C"]) {
        input.push(
            json!({"type": "function_call_output", "call_id": call["call_id"], "output": result}),
        );
    }
    let mut b = body(json!(input));
    b["tools"] = tools();
    let (status, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "Based on the tool results: 21 C; sunny"
    );

    let mut b = body(json!("weather and temperature in Paris"));
    b["tools"] = tools();
    b["parallel_tool_calls"] = json!(false);
    let (_, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(v["output"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["parallel_tool_calls"], false);
    b["parallel_tool_calls"] = json!(true);
    b["tool_choice"] = json!({"type": "function", "name": "get_temperature"});
    let (_, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(v["output"][0]["name"], "get_temperature", "{v}");
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "name": "get_temperature"})
    );
}

/// Checks the event stream's order and numbering; returns the events' data.
fn check_stream(text: &str) -> Vec<Value> {
    let data: Vec<Value> = sse_events(text)
        .iter()
        .map(|(name, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(
                name.as_deref(),
                v["type"].as_str(),
                "event line and type agree"
            );
            v
        })
        .collect();
    for (i, v) in data.iter().enumerate() {
        assert_eq!(v["sequence_number"], i, "{v}");
    }
    let types: Vec<&str> = data.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..2], ["response.created", "response.in_progress"]);
    assert_eq!(data[0]["response"]["status"], "in_progress");
    assert_eq!(data[0]["response"]["output"], json!([]));
    assert!(matches!(
        *types.last().unwrap(),
        "response.completed" | "response.incomplete"
    ));
    data
}

#[tokio::test]
async fn reasoning_is_an_item_first_streamed_and_read_back() {
    let s = start(Config::default()).await;
    let mut b = body(json!("[[think]] weather in Paris?"));
    b["tools"] = tools();
    let (status, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v);
    let output = v["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"], json!([]));
    assert_eq!(
        output[0]["content"],
        json!([{"type": "reasoning_text", "text": "Let me think about it."}])
    );
    assert_eq!(output[1]["type"], "function_call");

    let mut b = body(json!("[[think]] hello"));
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/responses", &b).await;
    assert_eq!(status, 200, "{text}");
    let data = check_stream(&text);
    let added: Vec<&str> = data
        .iter()
        .filter(|v| v["type"] == "response.output_item.added")
        .map(|v| v["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["reasoning", "message"]);
    let deltas: String = data
        .iter()
        .filter(|v| v["type"] == "response.reasoning_text.delta")
        .map(|v| {
            assert_eq!(v["output_index"], 0);
            v["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, "Let me think about it.");
    let done = data
        .iter()
        .find(|v| v["type"] == "response.reasoning_text.done")
        .unwrap();
    assert_eq!(done["text"], "Let me think about it.");
    let last = &data[data.len() - 1]["response"];
    check_response(last);
    assert_eq!(last["output"][0]["id"], done["item_id"], "the same item");
    assert_eq!(last["output"][0]["content"][0]["text"], deltas);
    // The mock streams one delta per reasoning token: usage counts them.
    let reasoning_deltas = data
        .iter()
        .filter(|v| v["type"] == "response.reasoning_text.delta")
        .count();
    assert!(reasoning_deltas > 1);
    assert_eq!(
        last["usage"]["output_tokens_details"]["reasoning_tokens"].as_u64(),
        Some(reasoning_deltas as u64),
        "{}",
        last["usage"]
    );

    // A stored response with reasoning continues: its reasoning item reads back as input.
    let mut b = body(json!("[[think]] hello"));
    b["store"] = json!(true);
    let (_, first) = s.post_json("/v1/responses", &b).await;
    let mut next = body(json!("and again"));
    next["previous_response_id"] = first["id"].clone();
    let (status, v) = s.post_json("/v1/responses", &next).await;
    assert_eq!(status, 200, "{v}");
    // Sent back by the client as items, too.
    let mut items = first["output"].as_array().unwrap().clone();
    items.insert(0, json!({"role": "user", "content": "[[think]] hello"}));
    items.push(json!({"role": "user", "content": "and again"}));
    let (status, v) = s.post_json("/v1/responses", &body(json!(items))).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn streaming_text_and_calls() {
    let s = start(Config::default()).await;
    let mut b = body(json!("hello there"));
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/responses", &b).await;
    assert_eq!(status, 200, "{text}");
    let data = check_stream(&text);
    let types: Vec<&str> = data.iter().map(|v| v["type"].as_str().unwrap()).collect();
    let deltas = types
        .iter()
        .filter(|t| **t == "response.output_text.delta")
        .count();
    assert!(deltas > 1);
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, expected);
    let item_id = data[2]["item"]["id"].as_str().unwrap();
    let streamed: String = data
        .iter()
        .filter(|v| v["type"] == "response.output_text.delta")
        .map(|v| {
            assert_eq!(v["item_id"], item_id);
            v["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, "Hello! You said: hello there");
    let done = &data[data.len() - 1]["response"];
    check_response(done);
    assert_eq!(
        done["output"][0]["id"], item_id,
        "the final response holds the streamed item"
    );
    assert_eq!(done["output"][0]["content"][0]["text"], streamed);

    let mut b = body(json!("weather and temperature in Paris"));
    b["tools"] = tools();
    b["stream"] = json!(true);
    let (_, text) = s.post("/v1/responses", &b).await;
    let data = check_stream(&text);
    let done = &data[data.len() - 1]["response"];
    check_response(done);
    let calls = done["output"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    for (index, call) in calls.iter().enumerate() {
        let id = call["id"].as_str().unwrap();
        let added = data
            .iter()
            .find(|v| v["type"] == "response.output_item.added" && v["output_index"] == index)
            .unwrap();
        assert_eq!(added["item"]["id"], id);
        assert_eq!(added["item"]["arguments"], "");
        let streamed: String = data
            .iter()
            .filter(|v| v["type"] == "response.function_call_arguments.delta" && v["item_id"] == id)
            .map(|v| v["delta"].as_str().unwrap())
            .collect();
        assert_eq!(streamed, call["arguments"].as_str().unwrap());
        let args_done = data
            .iter()
            .find(|v| v["type"] == "response.function_call_arguments.done" && v["item_id"] == id)
            .unwrap();
        assert_eq!(args_done["arguments"], call["arguments"]);
        assert_eq!(args_done["name"], call["name"]);
    }
}

#[tokio::test]
async fn stored_responses_continue_and_can_be_read_back() {
    let s = start(Config::default()).await;
    let mut b = body(json!("What is the weather in Paris?"));
    b["tools"] = tools();
    let (_, first) = s.post_json("/v1/responses", &b).await;
    let id = first["id"].as_str().unwrap();
    let call = &first["output"][0];
    assert_eq!(call["type"], "function_call", "{first}");

    // GET returns the stored response as it was answered.
    let got: Value = s
        .client
        .get(format!("{}/v1/responses/{id}", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, first);

    // previous_response_id: only the new item is sent; the stored conversation comes first.
    let mut next = body(
        json!([{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]),
    );
    next["tools"] = tools();
    next["previous_response_id"] = json!(id);
    let (status, second) = s.post_json("/v1/responses", &next).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id);
    assert_eq!(
        second["output"][0]["content"][0]["text"],
        "Based on the tool results: sunny"
    );
    next.as_object_mut().unwrap().remove("previous_response_id");
    let (_, alone) = s.post_json("/v1/responses", &next).await;
    assert!(
        second["usage"]["input_tokens"].as_u64() > alone["usage"]["input_tokens"].as_u64(),
        "the continued prompt holds the earlier turns: {second} vs {alone}"
    );

    // Streams are stored too, and continue the same way.
    let mut b = body(json!("hello"));
    b["stream"] = json!(true);
    let (_, text) = s.post("/v1/responses", &b).await;
    let data = check_stream(&text);
    let streamed = &data[data.len() - 1]["response"];
    let got: Value = s
        .client
        .get(format!(
            "{}/v1/responses/{}",
            s.base,
            streamed["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&got, streamed);

    // Unknown ids: GET is a 404, previous_response_id a 400 naming the parameter.
    let resp = s
        .client
        .get(format!("{}/v1/responses/resp_nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_error_shape(&resp.json().await.unwrap());
    let mut b = body(json!("x"));
    b["previous_response_id"] = json!("resp_nope");
    let (status, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(status, 400);
    let e = assert_error_shape(&v);
    assert_eq!(e["param"], "previous_response_id");
    assert_eq!(e["code"], "previous_response_not_found");

    // store: false keeps nothing; DELETE forgets.
    let mut b = body(json!("x"));
    b["store"] = json!(false);
    let (_, v) = s.post_json("/v1/responses", &b).await;
    assert_eq!(v["store"], false);
    let resp = s
        .client
        .get(format!(
            "{}/v1/responses/{}",
            s.base,
            v["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let url = format!("{}/v1/responses/{id}", s.base);
    let del: Value = s
        .client
        .delete(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        del,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    assert_eq!(
        s.client.get(&url).send().await.unwrap().status().as_u16(),
        404
    );
}

#[tokio::test]
async fn errors_have_openai_shapes() {
    let s = start(Config::default()).await;
    let resp = s
        .client
        .post(format!("{}/v1/responses", s.base))
        .header("content-type", "application/json")
        .body("{\"input\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        assert_error_shape(&resp.json().await.unwrap())["type"],
        "invalid_request_error"
    );
    for (b, param) in [
        (json!({"input": 5}), None),
        (
            json!({"input": "x", "background": true}),
            Some("background"),
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            Some("input[0].content[0].type"),
        ),
        (
            json!({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}),
            Some("tools[0].type"),
        ),
        (
            json!({"input": "x", "reasoning": {"effort": "max"}}),
            Some("reasoning.effort"),
        ),
        (
            json!({"input": "x", "reasoning": {"summary": "brief"}}),
            Some("reasoning.summary"),
        ),
    ] {
        let (status, v) = s.post_json("/v1/responses", &b).await;
        assert_eq!(status, 400, "{v}");
        let e = assert_error_shape(&v);
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{v}");
        }
    }
    let (status, v) = s
        .post_json("/v1/responses", &json!({"model": "nope", "input": "x"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(assert_error_shape(&v)["code"], "model_not_found");
    // A failure after the stream started: an `error` event, then `response.failed`.
    let mut b = body(json!("[[fail-midway]] [[tokens=20]]"));
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/responses", &b).await;
    assert_eq!(status, 200);
    let events = sse_events(&text);
    let n = events.len();
    assert_eq!(events[n - 2].0.as_deref(), Some("error"));
    let failed: Value = serde_json::from_str(&events[n - 1].1).unwrap();
    assert_eq!(failed["type"], "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert!(failed["response"]["error"]["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_and_a_gone_client_is_cancelled() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 0,
        ..Config::default()
    })
    .await;
    let mut long = body(json!("[[tokens=100000]]"));
    long["stream"] = json!(true);
    let a = s
        .client
        .post(format!("{}/v1/responses", s.base))
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status().as_u16(), 200);
    let (status, v) = s.post_json("/v1/responses", &body(json!("x"))).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(assert_error_shape(&v)["type"], "rate_limit_error");
    let mut stream = a.bytes_stream();
    assert!(!stream.next().await.unwrap().unwrap().is_empty());
    drop(stream);
    s.wait_for("the generation to be cancelled", |m| {
        m.cancelled() == 1 && m.active() == 0
    })
    .await;
    let (status, _) = s.post_json("/v1/responses", &body(json!("x"))).await;
    assert_eq!(status, 200);
}

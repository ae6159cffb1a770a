//! `POST /tokenize` and `/detokenize` over the mock engine (its ids are a text's UTF-8
//! bytes, BOS 256): llama.cpp's and vLLM's request and answer shapes, a chat rendered as a
//! chat completion would be, and 400s for what does not fit.

mod server_support;

use serde_json::{json, Value};
use server_support::{assert_error_shape, start, Config, MODEL};

#[tokio::test]
async fn text_and_chats_to_tokens_and_back() {
    let s = start(Config::default()).await;
    for path in ["/tokenize", "/v1/tokenize"] {
        let (status, v) = s.post_json(path, &json!({"content": "hi"})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v, json!({"tokens": [104, 105], "count": 2}));
    }
    // llama.cpp: add_special defaults to false; vLLM's prompt: add_special_tokens to true.
    let (_, v) = s
        .post_json("/tokenize", &json!({"content": "hi", "add_special": true}))
        .await;
    assert_eq!(v["tokens"], json!([256, 104, 105]));
    let (_, v) = s
        .post_json("/tokenize", &json!({"model": MODEL, "prompt": "hi"}))
        .await;
    assert_eq!(v["tokens"], json!([256, 104, 105]));
    let (_, v) = s
        .post_json(
            "/tokenize",
            &json!({"prompt": "hi", "add_special_tokens": false}),
        )
        .await;
    assert_eq!(v["tokens"], json!([104, 105]));
    let (_, v) = s
        .post_json("/tokenize", &json!({"content": "hi", "with_pieces": true}))
        .await;
    assert_eq!(
        v["tokens"],
        json!([{"id": 104, "piece": "h"}, {"id": 105, "piece": "i"}])
    );

    // A chat counts what a chat completion of it counts as prompt tokens.
    let chat = json!({"messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"}]});
    let (_, v) = s.post_json("/tokenize", &chat).await;
    let (_, done) = s.post_json("/v1/chat/completions", &chat).await;
    assert_eq!(v["count"], done["usage"]["prompt_tokens"]);

    let (status, v) = s
        .post_json("/detokenize", &json!({"tokens": [104, 105]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"content": "hi", "prompt": "hi"}));
}

#[tokio::test]
async fn bad_bodies_are_400s() {
    let s = start(Config::default()).await;
    for (path, body) in [
        ("/tokenize", json!({})),
        ("/tokenize", json!({"content": 5})),
        (
            "/tokenize",
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
        ),
        ("/detokenize", json!({"tokens": ["a"]})),
        ("/detokenize", json!({"tokens": [-1]})),
        ("/detokenize", json!({"tokens": [70000]})),
    ] {
        let (status, v) = s.post_json(path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {v}");
        assert_error_shape(&v);
    }
    let (status, v): (u16, Value) = s
        .post_json("/tokenize", &json!({"model": "x", "content": "a"}))
        .await;
    assert_eq!(status, 404, "{v}");
}

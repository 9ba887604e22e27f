//! Real error bodies of OpenAI, Azure OpenAI, llama.cpp, vLLM, Ollama, TGI, LM Studio and
//! a proxy, each read and classified.

use super::*;

fn classify(status: u16, body: &str) -> LlmError {
    ServerError::read(status, body.as_bytes(), None).classify()
}

fn overflow(status: u16, body: &str) -> Overflow {
    match classify(status, body) {
        LlmError::ContextTooLong(o) => o,
        other => panic!("not an overflow: {other:?}"),
    }
}

#[test]
fn llama_cpp_numeric_code_and_figures() {
    let body = r#"{"error":{"code":400,"message":"request (4110 tokens) exceeds the available context size (4096 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4110,"n_ctx":4096}}"#;
    let e = ServerError::read(400, body.as_bytes(), None);
    assert_eq!(e.code.as_deref(), Some("400"));
    assert!(e.message.starts_with("request (4110 tokens)"));
    let o = overflow(400, body);
    assert_eq!((o.requested, o.limit), (Some(4110), Some(4096)));
}

#[test]
fn openai_and_azure_context_length_exceeded() {
    let openai = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let o = overflow(400, openai);
    assert_eq!((o.requested, o.limit), (Some(9000), Some(8192)));
    let azure = r#"{"error":{"message":"This model's maximum context length is 4,096 tokens. However, you requested 5,010 tokens (4,010 in the messages, 1,000 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded","status":400}}"#;
    let o = overflow(400, azure);
    assert_eq!((o.requested, o.limit), (Some(5010), Some(4096)));
}

#[test]
fn vllm_flat_error_object() {
    let body = r#"{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 2100 tokens (1900 in the messages, 200 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#;
    let o = overflow(400, body);
    assert_eq!((o.requested, o.limit), (Some(2100), Some(2048)));
    let newer = r#"{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 512. This model's maximum context length is 2048 tokens and your request has 1600 input tokens (512 > 2048 - 1600).","type":"BadRequestError","param":null,"code":400}}"#;
    let o = overflow(400, newer);
    assert_eq!((o.requested, o.limit), (Some(1600), Some(2048)));
}

#[test]
fn ollama_string_error_and_overflow() {
    match classify(
        404,
        r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
    ) {
        LlmError::Misconfigured(detail) => assert!(detail.contains("llama9"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let o = overflow(
        400,
        r#"{"error":{"message":"the input length exceeds the context length","type":"api_error","param":null,"code":null}}"#,
    );
    assert_eq!((o.requested, o.limit), (None, None));
}

#[test]
fn tgi_and_lm_studio_overflow() {
    let tgi = r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`","error_type":"validation"}"#;
    let o = overflow(422, tgi);
    assert_eq!((o.requested, o.limit), (Some(4000), Some(4096)));
    let lm = r#"{"error":"Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough. Try to load the model with a larger context length, or provide a shorter input"}"#;
    let o = overflow(400, lm);
    assert_eq!((o.requested, o.limit), (Some(5000), Some(4096)));
}

#[test]
fn html_proxy_page_is_unavailable_with_its_title() {
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
    match classify(502, page) {
        LlmError::Unavailable(detail) => assert_eq!(detail, "HTTP 502: 502 Bad Gateway"),
        other => panic!("{other:?}"),
    }
    // A 413 from the proxy is a prompt too large for the server.
    let too_large = "<html><head><title>413 Request Entity Too Large</title></head></html>";
    assert!(matches!(
        classify(413, too_large),
        LlmError::ContextTooLong(_)
    ));
}

#[test]
fn auth_rate_limit_quota_and_plain_text() {
    let auth = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    assert!(matches!(classify(401, auth), LlmError::Auth(_)));
    assert!(matches!(classify(403, "Forbidden"), LlmError::Auth(_)));
    let limited = ServerError::read(
        429,
        br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        Some(Duration::from_secs(7)),
    )
    .classify();
    assert!(matches!(
        limited,
        LlmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    let credit = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    assert!(matches!(classify(429, credit), LlmError::OutOfCredit(_)));
    match classify(400, "  bad things\n happened  ") {
        LlmError::BadRequest(detail) => assert_eq!(detail, "HTTP 400: bad things happened"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(classify(500, ""), LlmError::Unavailable(d) if d.contains("no message")));
}

#[test]
fn stream_error_events_take_a_numeric_code_as_status() {
    let event = serde_json::json!({"code": 400, "message": "request (600 tokens) exceeds the available context size (512 tokens)", "type": "exceed_context_size_error"});
    let e = ServerError::from_event(&event);
    assert_eq!(e.status, 400);
    assert!(matches!(e.classify(), LlmError::ContextTooLong(o) if o.limit == Some(512)));
    let e = ServerError::from_event(&serde_json::json!("boom"));
    assert_eq!((e.status, e.message.as_str()), (500, "boom"));
}

#[test]
fn long_messages_are_cut() {
    let e = ServerError::read(400, "x".repeat(10_000).as_bytes(), None);
    assert!(e.message.chars().count() <= MESSAGE_LIMIT + 1);
}

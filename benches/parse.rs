//! Parse throughput of every tool-call parser, one-shot and streaming.

use callm::parsers::{self, ParseOptions, ParserChain};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const INPUTS: &[(&str, &str)] = &[
    ("llama3_json", "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Tokyo\", \"days\": 3}}"),
    ("pythonic", "[get_weather(city='Tokyo', days=3), get_time(tz='JST')]"),
    ("mistral", "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}]"),
    ("hermes", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>"),
    ("glaive", "<functioncall> {\"name\": \"send_email\", \"arguments\": '{\"to\": \"a@b.c\", \"body\": \"hi\"}'}"),
    ("gorilla", "get_current_weather(location='Boston, MA', unit='fahrenheit')"),
    ("nexusraven", "Call: get_weather_data(coordinates=get_coordinates_from_city(city_name='Seattle'))<bot_end>"),
    ("chatglm3", "get_weather\n```python\ntool_call(city='Tokyo', unit=\"celsius\")\n```"),
    ("json_fallback", "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}"),
];

fn prose() -> String {
    "The weather in Tokyo is sunny with a light breeze; expect 20 degrees (68 F) today. ".repeat(50)
}

fn bench(c: &mut Criterion) {
    let opts = ParseOptions {
        tools: None,
        id_style: None,
        id_seed: Some(0),
    };
    let mut g = c.benchmark_group("one_shot");
    for (name, text) in INPUTS {
        let chain = ParserChain::single(name).expect("parser");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| b.iter(|| chain.parse(black_box(text), &opts)));
    }
    let text = prose();
    let chain = parsers::chain(&["hermes", "json_fallback"]).expect("chain");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("prose_hermes_chain", |b| {
        b.iter(|| chain.parse(black_box(&text), &opts))
    });
    g.finish();

    let mut g = c.benchmark_group("streaming_4_byte_chunks");
    for (name, text) in INPUTS {
        let chain = ParserChain::single(name).expect("parser");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut s = chain.stream(opts.clone());
                let mut n = 0;
                for piece in text.as_bytes().chunks(4) {
                    if let Ok(p) = std::str::from_utf8(piece) {
                        n += s.push(p).len();
                    }
                }
                n + s.finish().len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

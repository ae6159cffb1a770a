//! `callm bench`: prompt-processing and generation speed, like llama.cpp's `llama-bench`.

use std::time::Instant;

use anyhow::Context;

use crate::cli::args::{ModelArgs, TemplateLimitArgs};
use crate::constrain::{Constraint, GrammarSpec};
use crate::registry::Registry;
use crate::runtime::LoadedModel;

/// Arguments of `callm bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens to process (the pp test; 0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens to generate (the tg test; 0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test (with --concurrent: sweeps over the client counts).
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also time the first token of two requests sharing this many prompt tokens, the
    /// second served from the prefix cache (0 skips it).
    #[arg(long = "prefix-reuse", default_value_t = 0)]
    prefix_reuse: usize,
    /// Also run the tg test under this JSON Schema (constrained decoding; the grammar restarts
    /// whenever an answer is complete) and report both speeds.
    #[arg(long = "json-schema", value_name = "FILE")]
    json_schema: Option<std::path::PathBuf>,
    /// Instead of pp/tg: this many simultaneous generations (a list, e.g. 1,2,4,8), each with
    /// a -p token prompt and -n generated tokens, batched by the scheduler; reports aggregate
    /// and per-client decode t/s, TTFT and inter-token latency.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    concurrent: Vec<usize>,
    /// With --concurrent: milliseconds between two clients' arrivals (0: together).
    #[arg(long = "arrival-ms", default_value_t = 0)]
    arrival_ms: u64,
    /// With --concurrent: once all clients decode, a new request with a prompt of this many
    /// tokens arrives; reports the clients' inter-token latency while it is prefilled.
    #[arg(long = "long-prompt", default_value_t = 0)]
    long_prompt: usize,
}

/// One test's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// `pp512`, `tg128`, ...
    pub test: String,
    /// Tokens per test run.
    pub n_tokens: usize,
    /// Mean tokens per second.
    pub avg_ts: f64,
    /// Standard deviation of tokens per second.
    pub stddev_ts: f64,
    /// Tokens per second of each repetition.
    pub samples_ts: Vec<f64>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Prompt ids for the benchmark: ordinary (non-special) tokens, deterministic.
fn bench_tokens(lm: &LoadedModel, n: usize) -> Vec<u32> {
    let vocab = lm.model.config().vocab_size as u64;
    let mut x: u64 = 0x9E3779B97F4A7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Stay in the lower part of the vocabulary where ordinary tokens live.
            (100 + x % (vocab / 2).max(1)) as u32
        })
        .collect()
}

/// One tg run: greedy decoding of `n_gen` tokens after `first`, under `constraint` when
/// given (restarted whenever an answer completes); returns the seconds taken.
fn tg_run(
    lm: &LoadedModel,
    first: &[u32],
    n_gen: usize,
    constraint: Option<&Constraint>,
) -> anyhow::Result<f64> {
    let mut cache = lm.model.new_cache(n_gen + 1)?;
    let mut logits = lm.model.forward(first, &mut cache, false)?;
    let mut state = constraint.map(Constraint::start);
    let t = Instant::now();
    let mut masking = std::time::Duration::ZERO;
    for _ in 0..n_gen {
        let mut v: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
        let tm = Instant::now();
        if let (Some(st), Some(c)) = (state.as_mut(), constraint) {
            if !st.mask(&mut v)? {
                *st = c.start();
                st.mask(&mut v)?;
            }
        }
        let next = crate::engine::sampling::argmax(&v);
        if let (Some(st), Some(c)) = (state.as_mut(), constraint) {
            if lm.stop_token_ids.contains(&next) {
                *st = c.start();
            } else {
                st.commit(next)?;
            }
            masking += tm.elapsed();
        }
        logits = lm.model.forward(&[next], &mut cache, false)?;
    }
    if constraint.is_some() {
        tracing::info!(
            mask_us_per_token = masking.as_secs_f64() * 1e6 / n_gen.max(1) as f64,
            "grammar mask + commit time"
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs the benchmark and prints the results.
pub fn run(args: &BenchArgs, registry: &Registry) -> anyhow::Result<()> {
    if args.reps == 0 {
        anyhow::bail!("-r must be at least 1");
    }
    let lm = LoadedModel::load(&args.model.load_options(), registry)?;
    let threads = args
        .model
        .threads
        .unwrap_or_else(candle_core::utils::get_num_threads);
    if !args.concurrent.is_empty() {
        return run_concurrent(args, std::sync::Arc::new(lm), threads);
    }
    let mut results = vec![];
    if args.n_prompt > 0 {
        let prompt = bench_tokens(&lm, args.n_prompt);
        if args.n_prompt >= lm.context {
            anyhow::bail!(
                "-p {} does not fit the context window {} (raise --ctx)",
                args.n_prompt,
                lm.context
            );
        }
        let mut samples = vec![];
        for rep in 0..=args.reps {
            let mut cache = lm.model.new_cache(args.n_prompt)?;
            let t = Instant::now();
            for chunk in prompt.chunks(crate::engine::SchedulerConfig::default().prefill_chunk) {
                lm.model.forward(chunk, &mut cache, false)?;
            }
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(args.n_prompt as f64 / s); // rep 0 is the warm-up
            }
        }
        let (avg, sd) = mean_std(&samples);
        results.push(BenchResult {
            test: format!("pp{}", args.n_prompt),
            n_tokens: args.n_prompt,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ts: samples,
        });
    }
    if args.n_gen > 0 {
        if args.n_gen + 1 >= lm.context {
            anyhow::bail!(
                "-n {} does not fit the context window {} (raise --ctx)",
                args.n_gen,
                lm.context
            );
        }
        let first = bench_tokens(&lm, 1);
        let mut runs: Vec<(String, Option<Constraint>)> = vec![(format!("tg{}", args.n_gen), None)];
        if let Some(path) = &args.json_schema {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            let spec = GrammarSpec::JsonSchema {
                schema,
                strict: false,
            };
            let c = lm.constraint_engine()?.compile(&spec, "")?;
            runs.push((format!("tg{}+json_schema", args.n_gen), Some(c)));
        }
        // Repetitions alternate between the runs, so that a busy machine slows them alike.
        let mut samples = vec![vec![]; runs.len()];
        for rep in 0..=args.reps {
            for (k, (_, constraint)) in runs.iter().enumerate() {
                let s = tg_run(&lm, &first, args.n_gen, constraint.as_ref())?;
                if rep > 0 {
                    samples[k].push(args.n_gen as f64 / s); // rep 0 is the warm-up
                }
            }
        }
        for ((test, _), samples) in runs.into_iter().zip(samples) {
            let (avg, sd) = mean_std(&samples);
            results.push(BenchResult {
                test,
                n_tokens: args.n_gen,
                avg_ts: avg,
                stddev_ts: sd,
                samples_ts: samples,
            });
        }
    }
    let prefix = if args.prefix_reuse > 0 {
        let tokens = bench_tokens(&lm, args.prefix_reuse + 32);
        Some(super::bench_prefix::run(
            &lm,
            &tokens,
            args.prefix_reuse,
            args.reps,
        )?)
    } else {
        None
    };
    let backend = if lm.device.is_cpu() {
        "CPU"
    } else if lm.device.is_cuda() {
        "CUDA"
    } else {
        "Metal"
    };
    // Which CPU kernels ran: numbers from AVX2, AVX-VNNI and AVX-512 machines differ.
    let kernels = lm.device.is_cpu().then(crate::kernels::describe);
    if args.json {
        let out = serde_json::json!({
            "model": lm.name,
            "family": lm.family.name,
            "backend": backend,
            "kernels": kernels,
            "threads": threads,
            "results": results,
            "prefix_reuse": prefix.as_ref().map(|p| serde_json::json!({
                "shared_tokens": p.shared,
                "reused_tokens": p.reused_tokens,
                "first_ttft_s": p.first_s,
                "second_ttft_s": p.second_s,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("| model | backend | threads | test | t/s |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for r in &results {
            println!(
                "| {} | {} | {} | {} | {:.2} ± {:.2} |",
                lm.name,
                kernels.map_or_else(|| backend.to_string(), |k| format!("{backend} ({k})")),
                threads,
                r.test,
                r.avg_ts,
                r.stddev_ts
            );
        }
        if let Some(p) = &prefix {
            let (first, _) = mean_std(&p.first_s);
            let (second, _) = mean_std(&p.second_s);
            println!(
                "\nprefix reuse ({} shared tokens, {} reused): first request TTFT {:.3} s, second {:.3} s ({:.1}% of the first)",
                p.shared,
                p.reused_tokens,
                first,
                second,
                100.0 * second / first.max(1e-9)
            );
        }
    }
    Ok(())
}

/// `--concurrent`: `-r` sweeps over the client counts (after one warm-up sweep), so that the
/// counts are measured minutes apart at most even where the machine's speed drifts; for each
/// count the sweep with the median aggregate rate is reported, with the median over sweeps of
/// its aggregate against the first count's in the same sweep.
fn run_concurrent(
    args: &BenchArgs,
    lm: std::sync::Arc<LoadedModel>,
    threads: usize,
) -> anyhow::Result<()> {
    use super::bench_concurrent::{self as bc, Scenario};
    let most = args.concurrent.iter().copied().max().unwrap_or(1);
    if args.n_prompt.max(args.long_prompt) + args.n_gen + 1 >= lm.context {
        anyhow::bail!("-p/--long-prompt plus -n do not fit the context window (raise --ctx)");
    }
    // Distinct prompts (no reuse between clients), the long one last.
    let all = bench_tokens(&lm, most * args.n_prompt + args.long_prompt);
    let mut prompts: Vec<Vec<u32>> = all
        .chunks(args.n_prompt.max(1))
        .map(<[u32]>::to_vec)
        .collect();
    prompts.truncate(most);
    if args.long_prompt > 0 {
        prompts.push(all[most * args.n_prompt..].to_vec());
    }
    // runs[i][sweep]: client count i's run in that sweep.
    let mut runs: Vec<Vec<bc::ConcurrentResult>> = vec![vec![]; args.concurrent.len()];
    for sweep in 0..=args.reps {
        for (i, &clients) in args.concurrent.iter().enumerate() {
            let sc = Scenario {
                clients,
                n_prompt: args.n_prompt,
                n_gen: args.n_gen,
                arrival_ms: args.arrival_ms,
                long_prompt: args.long_prompt,
            };
            if args.long_prompt > 0 {
                // The long prompt goes right after this run's clients.
                prompts.swap(clients, most);
            }
            let r = bc::run(&lm, &prompts, sc)?;
            if args.long_prompt > 0 {
                prompts.swap(clients, most);
            }
            if sweep > 0 {
                runs[i].push(r);
            }
        }
    }
    let rates: Vec<Vec<f64>> = runs
        .iter()
        .map(|rs| rs.iter().map(|r| r.aggregate_ts).collect())
        .collect();
    let ratios = bc::median_ratios(&rates);
    let mut results = vec![];
    for (mut reps, ratio) in runs.into_iter().zip(ratios) {
        reps.sort_by(|a, b| a.aggregate_ts.total_cmp(&b.aggregate_ts));
        // The lower middle for an even count, as the quantiles.
        let mut r = reps.swap_remove((reps.len() - 1) / 2);
        r.ratio_to_first = ratio;
        results.push(r);
    }
    if args.json {
        let kernels = lm.device.is_cpu().then(crate::kernels::describe);
        let out = serde_json::json!({
            "model": lm.name,
            "kernels": kernels,
            "threads": threads,
            "concurrent": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        bc::print_table(&lm.name, threads, &results);
    }
    Ok(())
}

impl BenchArgs {
    /// CPU threads requested with -t.
    pub fn threads(&self) -> Option<usize> {
        self.model.threads
    }

    /// The chat-template render limits asked for.
    pub fn template_limits(&self) -> &TemplateLimitArgs {
        &self.model.template_limits
    }
}

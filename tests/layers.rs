//! The layering rule of the crate, checked on its source: a frame flows one way, and so do the
//! imports. From the bottom:
//!
//! 1. base: frame and media types, GStreamer helpers, GPU device ids, H.264 bytes, exit kinds;
//! 2. the GPU runtime (cuda) and the pure path policy (plan), which the stages below build on;
//! 3. the stages: source, render, encode, sink (and the fleet's register, the NVENC slots, the
//!    watchdog). A stage imports no other stage, no config and no client;
//! 4. config, the validated settings a stream starts from (it holds the stages' own specs);
//! 5. the library: stream (and the start-up preflight);
//! 6. the clients: the commands (doctor, measure, go2rtc-config), then the command line (clap's
//!    structs, which name the commands' options), then `cli_main`.
//!
//! A module imports only modules of lower layers. Inside the base layer imports are free as long
//! as they do not form a cycle; between stages only the edges in [`STAGE_EDGES`] are allowed, each
//! with its reason. Test code (`#[cfg(test)]`) and comments are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. Every top-level module of src/ must be in exactly one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "annexb", "check", "clock", "device", "exit", "faults", "frame", "fsutil", "gst_util", "settings", "stamp",
            "stats", "stderr",
        ],
    ),
    ("GPU runtime and path policy", &["cuda", "plan"]),
    ("stages", &["source", "render", "encode", "sink", "register", "slots", "watchdog"]),
    ("config", &["config"]),
    ("library", &["stream", "preflight"]),
    ("commands", &["doctor", "measure", "go2rtc"]),
    ("the command line", &["cli"]),
    ("the entry point", &["entry"]),
];

/// The first layer of the clients: from here up, code may use clap.
const CLIENTS: usize = 5;

/// Imports allowed between modules of one layer above the base, with the reason. Each must exist
/// (a stale entry fails too).
const STAGE_EDGES: &[(&str, &str, &str)] = &[(
    "source",
    "render",
    "a PipeWire node's DMA-BUF frames are imported as EGL images and drawn by render's import pass \
     (source/pipewire/gpu.rs)",
)];

/// Modules below the clients that may name clap: the settings enums derive `clap::ValueEnum`, so
/// that the command line takes the library's own values.
const CLAP_ALLOWED: &[&str] = &["settings", "encode"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and char literals blanked (so that neither a doc comment
/// naming `crate::x` nor a `"{"` in a format string counts).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(b.len(), |n| i + n + 2);
            out.extend(src[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            let end = src[body..].find(&close).map_or(b.len(), |n| body + n + close.len());
            out.push_str("\"\"");
            out.extend(src[i..end].chars().filter(|&c| c == '\n'));
            i = end;
        } else if b[i] == b'"' || (b[i] == b'b' && rest.starts_with("b\"")) {
            let mut j = if b[i] == b'b' { i + 2 } else { i + 1 };
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            out.extend(src[i..j.min(b.len())].chars().filter(|&c| c == '\n'));
            i = j + 1;
        } else if b[i] == b'\'' && is_char_literal(rest) {
            let len = rest[1..].find('\'').unwrap() + 2;
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`...: the number of `#`.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s).strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// `'a'`, `'\n'`, `'\''`, `'{'`, not a lifetime (`'a`, `'static`).
fn is_char_literal(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 3 && b[1] != b'\\' && s[1..].chars().nth(1) == Some('\''))
        || (b.len() >= 4 && b[1] == b'\\' && s[3..].contains('\'') && s[3..].find('\'').unwrap() <= 8)
}

/// The code without the items marked `#[cfg(test)]` (a test module, a test-only function or use).
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its closing brace, or at a `;` before any brace.
        let (semi, brace) = (item.find(';'), item.find('{'));
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = item.len();
                for (i, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a file's code names through `crate::`, `use crate::{..}` or `super::`.
fn imports(code: &str, module_path: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let is_word_start =
        |i: usize| i == 0 || !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$');
    for (i, _) in code.match_indices("crate::") {
        if !is_word_start(i) {
            continue;
        }
        let after = code[i + 7..].trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each part at depth one.
            let (mut depth, mut part_start) = (1, 0);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let name = ident_at(group[part_start..].trim_start());
                        if !name.is_empty() && name != "self" {
                            found.insert(name.to_string());
                        }
                        part_start = j + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            let name = ident_at(after);
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    for (i, _) in code.match_indices("super::") {
        if !is_word_start(i) || code[..i].ends_with("super::") {
            continue;
        }
        let mut ups = 0;
        let mut rest = &code[i..];
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        // `super` of the file's module; at the top of the crate the next name is a top module.
        if ups >= module_path.len() {
            let name = ident_at(rest.trim_start_matches('{').trim_start());
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    found
}

/// Every top-level module's imports of other top-level modules, with one file that does each.
fn module_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 60, "found only {} files under {}", files.len(), src.display());
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let mut path: Vec<String> =
            rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
        if path.last().is_some_and(|p| p == "mod") {
            path.pop();
        }
        if path == ["lib"] || path == ["main"] {
            continue;
        }
        let top = path[0].clone();
        let code = without_tests(&code_only(&std::fs::read_to_string(&file).unwrap()));
        let edges = graph.entry(top.clone()).or_default();
        for other in imports(&code, &path) {
            let is_module = src.join(format!("{other}.rs")).exists() || src.join(&other).is_dir();
            if other != top && is_module {
                edges.entry(other).or_insert_with(|| rel.display().to_string());
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, members)| members.contains(&module))
}

#[test]
fn imports_follow_the_layers_one_way() {
    let graph = module_graph();
    let mut broken = Vec::new();
    for module in graph.keys() {
        if layer_of(module).is_none() {
            broken.push(format!("src/{module}: not in any layer of tests/layers.rs (place it there)"));
        }
    }
    for (module, edges) in &graph {
        let Some(from) = layer_of(module) else { continue };
        for (other, file) in edges {
            let Some(to) = layer_of(other) else { continue };
            let allowed =
                to < from || (to == from && from == 0) || STAGE_EDGES.iter().any(|(a, b, _)| a == module && b == other);
            if !allowed {
                broken.push(format!(
                    "src/{file}: {module} ({}) imports {other} ({}), which is not below it",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    for (a, b, why) in STAGE_EDGES {
        if !graph.get(*a).is_some_and(|e| e.contains_key(*b)) {
            broken.push(format!("STAGE_EDGES lists {a} -> {b} ({why}), but {a} no longer imports {b}: remove it"));
        }
    }
    assert!(broken.is_empty(), "the layering rule is broken:\n{}", broken.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_through_any_path() {
    let graph = module_graph();
    // Depth-first search for a back edge; the cycle is printed module by module.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn below_the_clients_only_the_settings_enums_name_clap() {
    assert_eq!(LAYERS[CLIENTS].0, "commands", "CLIENTS names the first client layer");
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut named = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if layer_of(&top).is_some_and(|l| l >= CLIENTS) || top == "lib" || top == "main" {
            continue;
        }
        // A settings enum may derive clap::ValueEnum and spell its values with #[value(..)]: that
        // only describes it, so the CLI needs no copy of it. Nothing else below the clients may.
        let describes = |l: &str| {
            let l = l.trim_start();
            CLAP_ALLOWED.contains(&top.as_str())
                && (l.starts_with("#[value(") || (l.starts_with("#[derive(") && l.contains("clap::ValueEnum")))
        };
        let code = without_tests(&code_only(&std::fs::read_to_string(&file).unwrap()));
        for line in code.lines().filter(|l| !describes(l)) {
            if line.contains("clap") || line.contains("crate::cli") {
                named.push(format!("{}: {}", rel.display(), line.trim()));
            }
        }
    }
    assert!(named.is_empty(), "below the clients, code names clap or the CLI:\n{}", named.join("\n"));
}

/// The checker itself: it must see what it is meant to see, and nothing in comments or strings.
#[test]
fn the_checker_reads_imports_and_ignores_comments_strings_and_tests() {
    let code = code_only(
        "use crate::{frame::Frame, gst_util, exit::{Exit, fail}};\n\
         // crate::cli in a comment\n\
         /* crate::stream */ let s = \"crate::config {\"; let c = '{';\n\
         fn f<'a>(x: &'a str) { super::super::render::go(); crate::plan::choose(); }\n\
         #[cfg(test)]\nmod tests { use crate::cli::Cli; }\n\
         #[cfg(test)]\nuse crate::measure;\n",
    );
    let code = without_tests(&code);
    let got = imports(&code, &["source".into(), "pipewire".into()]);
    let want: BTreeSet<String> = ["frame", "gst_util", "exit", "render", "plan"].map(String::from).into();
    assert_eq!(got, want);
}

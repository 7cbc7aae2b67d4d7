//! The shape of the source tree (issue 18): module imports form a DAG, no file under
//! `src/` is over 500 lines and no `fn` over 80 (STYLE.md §24); the allowlists for a
//! file or function caught mid-split are empty and may only shrink.
//!
//! Each file under `src/` is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`). A
//! path in a file — `crate::a::b::Item`, `super::c::Item`, `self::d::Item`, in a `use` or
//! inline — is an edge to the deepest module file that path names. Edges between a module
//! and one of its ancestors are left out (a parent declares and re-exports its children;
//! a child uses its parent's items), so a cycle is always between modules that are not
//! nested: `config → cli → config`, or two siblings importing each other. The test fails
//! on any such cycle and names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root: `["store", "sqlite", "ops"]`; `[]` is the root.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `lib.rs` and `main.rs` → the root.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file
        .strip_prefix(src)
        .expect("under src/")
        .with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments, string literals and character literals, so a path in a
/// doc line or a message is not an import and a `'{'` is no brace. Every line break is
/// kept, so a position in the result is on the same line as in the source.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // Pushes the line breaks of `chars[from..to]`: what a blanked literal or comment spanned.
    let keep_lines = |out: &mut String, from: usize, to: usize| {
        let breaks = chars[from..to.min(chars.len())]
            .iter()
            .filter(|c| **c == '\n');
        out.extend(breaks);
    };
    let mut i = 0;
    while i < chars.len() {
        let end = match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                let end = (i..chars.len()).find(|&j| chars[j] == '\n');
                end.unwrap_or(chars.len())
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let end = (i + 2..chars.len()).find(|&j| chars[j - 1] == '*' && chars[j] == '/');
                end.map_or(chars.len(), |j| j + 1)
            }
            'r' if raw_string_at(&chars, i).is_some() => {
                out.push_str("\"\"");
                raw_string_at(&chars, i).expect("checked")
            }
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                j + 1
            }
            // A character literal (`'x'`, `'\''`, `'\u{1F}'`), not a lifetime (`'a`).
            '\'' if chars.get(i + 1) == Some(&'\\') => {
                let close = (i + 3..chars.len()).find(|&j| chars[j] == '\'');
                out.push_str("' '");
                close.map_or(chars.len(), |j| j + 1)
            }
            '\'' if chars.get(i + 2) == Some(&'\'') => {
                out.push_str("' '");
                i + 3
            }
            c => {
                out.push(c);
                i += 1;
                continue;
            }
        };
        keep_lines(&mut out, i, end);
        i = end;
    }
    out
}

/// Where the raw string literal starting at `chars[at]` (`r"…"`, `r#"…"#`, also after a
/// `b`) ends, one past its last `#`; `None` when no raw string starts there.
fn raw_string_at(chars: &[char], at: usize) -> Option<usize> {
    let is_word = |c: &char| c.is_alphanumeric() || *c == '_';
    let before = at.checked_sub(1).map(|j| chars[j]);
    let after_b = before == Some('b') && (at < 2 || !is_word(&chars[at - 2]));
    if chars[at] != 'r' || (before.is_some_and(|c| is_word(&c)) && !after_b) {
        return None;
    }
    let hashes = chars[at + 1..].iter().take_while(|c| **c == '#').count();
    let open = at + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let mut j = open + 1;
    while j < chars.len() {
        let closes =
            chars[j] == '"' && chars[j + 1..].iter().take_while(|c| **c == '#').count() >= hashes;
        if closes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// Every path a source names that starts at `crate`, `super` or `self`, with `use`
/// groups (`crate::{a::b, c}`) expanded: each as its words, the first still unresolved.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let rest: String = bytes[i..(i + 7).min(bytes.len())].iter().collect();
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|h| rest.starts_with(h));
        match head {
            Some(h) if starts_word && !(i >= 2 && bytes[i - 2..i] == [':', ':']) => {
                let (paths, end) = parse_path(&bytes, i, vec![]);
                found.extend(paths);
                i = end.max(i + h.len());
            }
            _ => i += 1,
        }
    }
    found
}

/// Parses a path (with nested groups) from `at`; returns the expanded paths and where
/// it ended.
fn parse_path(s: &[char], mut at: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut words = prefix;
    loop {
        let start = at;
        while at < s.len() && (s[at].is_alphanumeric() || s[at] == '_') {
            at += 1;
        }
        if at > start {
            words.push(s[start..at].iter().collect());
        }
        if s.get(at) == Some(&':') && s.get(at + 1) == Some(&':') {
            at += 2;
            if s.get(at) == Some(&'{') {
                let mut all = Vec::new();
                at += 1;
                loop {
                    while at < s.len() && (s[at].is_whitespace() || s[at] == ',') {
                        at += 1;
                    }
                    if at >= s.len() || s[at] == '}' {
                        return (all, at + 1);
                    }
                    let (paths, end) = parse_path(s, at, words.clone());
                    all.extend(paths);
                    at = end;
                    // Skip an `as name` alias.
                    while at < s.len() && !matches!(s[at], ',' | '}') {
                        at += 1;
                    }
                }
            }
            continue;
        }
        return (vec![words], at);
    }
}

/// Resolves `super`/`self`/`crate` against the file's module and keeps the deepest
/// existing module the path names.
fn target(from: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath = match path.first()?.as_str() {
        "crate" => vec![],
        _ => from.clone(),
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop();
        while rest.first().is_some_and(|w| w == "super") {
            base.pop();
            rest = &rest[1..];
        }
    }
    let mut best = None;
    for word in rest {
        base.push(word.clone());
        if modules.contains(&base) {
            best = Some(base.clone());
        } else {
            break;
        }
    }
    best
}

fn is_ancestor(a: &ModPath, b: &ModPath) -> bool {
    a.len() <= b.len() && b[..a.len()] == a[..]
}

/// The module graph of `src/`, ancestor edges left out.
fn module_graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        let code = code_only(&std::fs::read_to_string(file).expect("read source"));
        let edges = graph.entry(from.clone()).or_default();
        for path in paths_in(&code) {
            if let Some(to) = target(&from, &path, &modules)
                && !is_ancestor(&to, &from)
                && !is_ancestor(&from, &to)
            {
                edges.insert(to);
            }
        }
    }
    graph
}

/// Cycles as strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g ModPath) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let Some((w, _)) = self.graph.get_key_value(w) else {
                    continue;
                };
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(format!("crate::{}", w.join("::")));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn module_imports_form_a_dag() {
    let graph = module_graph();
    assert!(graph.len() > 20, "the source tree was found");
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between modules (each line one cycle):\n{}",
        found
            .iter()
            .map(|c| c.join(" ⇄ "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_cycle_finder_sees_a_cycle_and_a_group() {
    let modules: BTreeSet<ModPath> = [vec![], vec!["a".into()], vec!["b".into()]]
        .into_iter()
        .collect();
    let code = code_only("use crate::{a::X, b as c};\n// crate::b::Y in a comment\n");
    let paths = paths_in(&code);
    let targets: Vec<_> = paths
        .iter()
        .filter_map(|p| target(&vec!["b".into()], p, &modules))
        .collect();
    assert_eq!(targets, vec![vec!["a".to_owned()], vec!["b".to_owned()]]);
    let graph: BTreeMap<ModPath, BTreeSet<ModPath>> = [
        (vec!["a".into()], [vec!["b".into()]].into_iter().collect()),
        (vec!["b".into()], [vec!["a".into()]].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["crate::a", "crate::b"]]);
}

// Size (STYLE.md §24, issue 18): no file under `src/` over 500 lines, no `fn` over 80.

/// Most lines a source file under `src/` may have.
const MAX_FILE_LINES: usize = 500;
/// Most lines a `fn` under `src/` may span, from the line of `fn` to its closing brace.
const MAX_FN_LINES: usize = 80;

/// Files allowed over [`MAX_FILE_LINES`] for a while (none now): path under `src/`,
/// lines at the time of writing. An entry may shrink but not grow, and must be removed
/// once its file is within the limit: the list only gets shorter.
const OVERSIZED_FILES: &[(&str, usize)] = &[];

/// Functions allowed over [`MAX_FN_LINES`] for a while (none now): path under `src/`,
/// name, lines at the time of writing. Same rule as [`OVERSIZED_FILES`].
const OVERSIZED_FNS: &[(&str, &str, usize)] = &[];

/// Every source file under `src/`: its path below `src/` (with `/`) and its text.
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).expect("under src/");
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy());
            let text = std::fs::read_to_string(file).expect("read source");
            (rel.collect::<Vec<_>>().join("/"), text)
        })
        .collect()
}

/// One `fn` with a body: its name, the line of `fn` (from 1) and how many lines it
/// spans up to its closing brace.
#[derive(Debug, PartialEq)]
struct FnSpan {
    name: String,
    line: usize,
    lines: usize,
}

/// Every `fn` with a body in `code` (a [`code_only`] text), nested ones included. A
/// signature ends at its body's `{` or, for a declaration without a body, at a `;`
/// outside brackets; the body ends at the brace that balances it.
fn functions(code: &str) -> Vec<FnSpan> {
    let chars: Vec<char> = code.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let line_at = |at: usize| 1 + chars[..at].iter().filter(|c| **c == '\n').count();
    let mut found = Vec::new();
    for at in 0..chars.len().saturating_sub(2) {
        let keyword = chars[at] == 'f'
            && chars[at + 1] == 'n'
            && chars[at + 2].is_whitespace()
            && (at == 0 || !is_word(chars[at - 1]));
        if !keyword {
            continue;
        }
        let start = (at + 2..chars.len()).find(|&j| !chars[j].is_whitespace());
        let Some(start) = start.filter(|&j| is_word(chars[j])) else {
            continue; // `fn(u8)`, a pointer type; `fn $name` in a macro.
        };
        let name: String = chars[start..].iter().take_while(|c| is_word(**c)).collect();
        let Some(open) = body_start(&chars, start) else {
            continue;
        };
        let close = matching_brace(&chars, open);
        found.push(FnSpan {
            name,
            line: line_at(at),
            lines: line_at(close) - line_at(at) + 1,
        });
    }
    found
}

/// The `{` opening the body of a `fn` whose signature starts at `from`; `None` when a
/// `;` ends it first (a declaration in a trait or an `extern` block).
fn body_start(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, c) in chars.iter().enumerate().skip(from) {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return None,
            '{' if depth == 0 => return Some(j),
            _ => {}
        }
    }
    None
}

/// The `}` that closes the `{` at `open` (the end of the text if none does).
fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

/// Checks measured sizes against a limit and an allowlist of known offenders. Fails
/// naming every new offender, every allowlisted one that grew, and every allowlisted
/// one that is now within the limit or gone (to be removed from the list).
fn check_sizes(
    what: &str,
    limit: usize,
    measured: &[(String, usize)],
    allowed: &[(String, usize)],
) {
    let mut problems = Vec::new();
    for (item, size) in measured {
        match allowed.iter().find(|(known, _)| known == item) {
            None if *size > limit => {
                problems.push(format!("{item}: {size} lines, over {limit}"));
            }
            Some((_, known)) if size > known => problems.push(format!(
                "{item}: {size} lines, more than the {known} of the allowlist"
            )),
            _ => {}
        }
    }
    for (item, _) in allowed {
        let still_over = measured.iter().any(|(m, size)| m == item && *size > limit);
        if !still_over {
            problems.push(format!(
                "{item} is no longer over {limit} lines (or is gone): remove it from the allowlist"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{what} (each line one problem):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_over_500_lines() {
    let measured: Vec<(String, usize)> = sources()
        .into_iter()
        .map(|(path, text)| (path, text.lines().count()))
        .collect();
    assert!(measured.len() > 20, "the source tree was found");
    let allowed: Vec<(String, usize)> = OVERSIZED_FILES
        .iter()
        .map(|(path, lines)| (path.to_string(), *lines))
        .collect();
    check_sizes("source files", MAX_FILE_LINES, &measured, &allowed);
}

#[test]
fn no_function_is_over_80_lines() {
    let mut measured = Vec::new();
    for (path, text) in sources() {
        for f in functions(&code_only(&text)) {
            measured.push((format!("{path}: fn {}", f.name), f.lines));
        }
    }
    assert!(measured.len() > 500, "the functions were found");
    let allowed: Vec<(String, usize)> = OVERSIZED_FNS
        .iter()
        .map(|(path, name, lines)| (format!("{path}: fn {name}"), *lines))
        .collect();
    check_sizes("functions", MAX_FN_LINES, &measured, &allowed);
}

#[test]
fn the_size_scan_skips_literals_and_counts_from_fn_to_its_brace() {
    let code = code_only(concat!(
        "/// fn doc() {\n",
        "pub fn outer(x: [u8; 2]) -> char {\n",
        "    let s = r#\"}\"#; let c = '}'; let q = '\"';\n",
        "    fn inner() { }\n",
        "    /* } */ '{'\n",
        "}\n",
        "trait T { fn declared(&self); }\n",
        "type P = fn(u8);\n",
    ));
    let spans = functions(&code);
    let expected = [("outer", 2, 5), ("inner", 4, 1)];
    let expected: Vec<FnSpan> = expected
        .iter()
        .map(|&(name, line, lines)| FnSpan {
            name: name.into(),
            line,
            lines,
        })
        .collect();
    assert_eq!(spans, expected);
}

//! The shape of the source tree: module imports form a DAG (issue 18).
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

/// The source without comments and string literals, so a path in a doc line or a
/// message is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
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

//! VIP files: YAML (several VIPs as `---` documents) or JSON (one VIP),
//! in the lb.v1 schema's proto3 JSON names. A fault is reported as
//! `file:line:column: field: what`, from the parser's own positions.

use std::path::{Path, PathBuf};

use lb_config::{Keys, Vip};
use lb_proto::v1 as pb;
use serde::de::DeserializeOwned;

use crate::fail::{Failure, Result};

/// One VIP read from a file, checked as a controller checks it.
#[derive(Clone, Debug)]
pub struct Document {
    /// `file:line` of the document's first line.
    pub source: String,
    pub vip: Vip,
}

/// Every VIP of `paths` (files, or directories of `*.yaml`, `*.yml`,
/// `*.json`), each fault of each named; a name given twice is refused.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Document>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut documents: Vec<Document> = Vec::new();
    let mut faults = Vec::new();
    for file in &files {
        match read_file(file) {
            Ok(docs) => documents.extend(docs),
            Err(f) => faults.push(f.message),
        }
    }
    for (i, d) in documents.iter().enumerate() {
        if let Some(first) = documents[..i].iter().find(|o| o.vip.name == d.vip.name) {
            faults.push(format!(
                "{}: name: VIP {:?} is also defined at {}",
                d.source, d.vip.name, first.source
            ));
        }
    }
    if faults.is_empty() {
        Ok(documents)
    } else {
        Err(Failure::input(faults.join("\n")))
    }
}

/// The VIPs of one file.
pub fn read_file(path: &Path) -> Result<Vec<Document>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    let messages: Vec<(usize, pb::Vip)> = if path.extension().is_some_and(|e| e == "json") {
        vec![(1, parse_json(path, &text)?)]
    } else {
        let mut out = Vec::new();
        for (line, doc) in yaml_documents(&text) {
            out.push((line, parse_yaml_at(path, doc, line)?));
        }
        out
    };
    let keys = Keys::new("").expect("the empty prefix");
    let mut documents = Vec::new();
    let mut faults = Vec::new();
    for (line, message) in messages {
        let source = format!("{}:{line}", path.display());
        let key = keys.vip(&message.name);
        let mut message = message;
        if message.schema == 0 {
            message.schema = lb_proto::SCHEMA;
        }
        match Vip::from_proto(&keys, &key, message) {
            Ok(vip) => documents.push(Document { source, vip }),
            Err(errors) => faults.extend(errors.into_iter().map(|e| {
                let field = if e.field == "(key)" { "name" } else { &e.field };
                format!("{source}: {field}: {}", e.reason)
            })),
        }
    }
    if faults.is_empty() {
        Ok(documents)
    } else {
        Err(Failure::input(faults.join("\n")))
    }
}

/// The documents of a YAML stream with the line each starts on; those
/// holding nothing but comments are skipped.
fn yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("---") {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// One YAML document, which starts at line 1 of `path`.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    parse_yaml_at(path, text, 1)
}

fn parse_yaml_at<T: DeserializeOwned>(path: &Path, text: &str, first_line: usize) -> Result<T> {
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let at = inner
            .location()
            .map(|l| format!("{}:{}", l.line() + first_line - 1, l.column()))
            .unwrap_or_else(|| first_line.to_string());
        Failure::input(format!(
            "{}:{at}: {}{}",
            path.display(),
            named(&field),
            without_position(&inner.to_string())
        ))
    })
}

fn parse_json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        Failure::input(format!(
            "{}:{}:{}: {}{}",
            path.display(),
            inner.line(),
            inner.column(),
            named(&field),
            without_position(&inner.to_string())
        ))
    })
}

fn named(field: &str) -> String {
    if field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// A parser's message without the position it appends, which the report
/// puts in front.
fn without_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_first_line_and_comments_alone_are_none() {
        let text = "# header\n---\nname: a\n---\n# nothing\n---\nname: b\n";
        let docs = yaml_documents(text);
        assert_eq!(docs.iter().map(|d| d.0).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(docs[1].1, "name: b\n");
    }
}

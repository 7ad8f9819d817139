//! warren-dump: reads Warren segment files offline and prints records, ack state and CRC
//! verdicts. It never writes and never needs a running broker.
//!
//! Exit codes: 0 clean, 1 corruption found, 2 usage or I/O error.
//!
//! A bad stretch after the last valid record of a queue's newest segment (its write head)
//! is a torn tail, not corruption: a write cut short by a crash (kill -9 in the middle of a
//! batch's copy, or a power cut before its sync). Its records were never confirmed —
//! a confirm waits for the whole write and its sync — and recovery discards them. The same
//! bytes anywhere else (between valid records, or in a segment with a newer one after it)
//! cannot come from a crash: the writer finishes each write before the next begins.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use warren_storage::{acks, record, segment};

const USAGE: &str = "usage: warren-dump PATH [--json] [--verify] [--records]

PATH is a data dir, a queue's directory or one segment file (*.seg).
  --records  print every record (seq, offset, length, flags, timestamp, CRC verdict, body preview)
  --json     one JSON object per line instead of text
  --verify   print only problems and the summary; exit 1 if any record is corrupt
             (a torn tail of a queue's newest segment is reported, and is not corruption)

Exit status: 0 clean, 1 corruption found, 2 usage or I/O error.";

struct Options {
    path: PathBuf,
    json: bool,
    verify: bool,
    records: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut path = None;
    let (mut json, mut verify, mut records) = (false, false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--verify" => verify = true,
            "--records" => records = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            _ if path.is_some() => return Err("more than one PATH".into()),
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    Ok(Options {
        path: path.ok_or("missing PATH")?,
        json,
        verify,
        records,
    })
}

/// Every segment file under `path` (recursively), sorted.
fn find_segments(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            find_segments(&entry, out)?;
        } else if entry
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(segment::parse_segment_file_name)
            .is_some()
        {
            out.push(entry);
        }
    }
    Ok(())
}

fn preview(body: &[u8]) -> String {
    let shown = &body[..body.len().min(32)];
    let mut s: String = shown
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    if body.len() > shown.len() {
        s.push('…');
    }
    s
}

#[derive(Default)]
struct Totals {
    segments: u64,
    records: u64,
    live: u64,
    corrupt: u64,
    torn_tails: u64,
}

/// The segment's base from its header; or None, after reporting a file whose header
/// never reached the disk (not corruption) or is unreadable (corruption).
fn read_header(bytes: &[u8], name: &str, opts: &Options, totals: &mut Totals) -> Option<u64> {
    let head = &bytes[..bytes.len().min(segment::FILE_HEADER_LEN)];
    if segment::header_never_written(head) {
        // A power cut before the file's first sync: it never held a confirmed record, and
        // recovery removes it quietly. Not corruption.
        if opts.json {
            println!(
                "{}",
                json!({"type": "never_written", "file": name, "bytes": bytes.len()})
            );
        } else {
            println!("{name}: never written (its header never reached the disk; holds nothing, recovery removes it)");
        }
        return None;
    }
    match segment::decode_file_header(bytes) {
        Ok(base) => Some(base),
        Err(reason) => {
            totals.corrupt += 1;
            if opts.json {
                println!(
                    "{}",
                    json!({"type": "corruption", "file": name, "offset": 0, "bytes_dropped": bytes.len(), "reason": reason})
                );
            } else {
                println!("{name}: CORRUPT file header: {reason}");
            }
            None
        }
    }
}

/// The base of the newest segment file in each directory holding one of `files`: the
/// queue's write head, whose trailing bad stretch is a torn tail.
fn head_bases(files: &[PathBuf]) -> std::io::Result<HashMap<PathBuf, u64>> {
    let mut heads = HashMap::new();
    for file in files {
        let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        if heads.contains_key(&dir) {
            continue;
        }
        let listing = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir.as_path()
        };
        let mut newest = 0;
        for entry in std::fs::read_dir(listing)? {
            let name = entry?.file_name();
            if let Some(base) = name.to_str().and_then(segment::parse_segment_file_name) {
                newest = newest.max(base);
            }
        }
        heads.insert(dir, newest);
    }
    Ok(heads)
}

fn dump_segment(
    path: &Path,
    is_head: bool,
    opts: &Options,
    totals: &mut Totals,
) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let name = path.display().to_string();
    let Some(base) = read_header(&bytes, &name, opts, totals) else {
        return Ok(());
    };
    let ack_path = path.with_file_name(segment::ack_file_name(base));
    let acked: HashSet<u64> = acks::read_file(&ack_path)?.seqs.into_iter().collect();
    let mut records = Vec::new();
    let mut scan = segment::scan_records(&bytes, path, base, true, |r| records.push(r));
    let valid_end = scan.valid_end;
    let torn_tail = if is_head {
        scan.corruptions.pop_if(|c| c.offset as usize >= valid_end)
    } else {
        None
    };
    let first = records.first().map(|r| r.header.seq);
    let last = records.last().map(|r| r.header.seq);
    let live = records
        .iter()
        .filter(|r| !acked.contains(&r.header.seq))
        .count() as u64;
    totals.segments += 1;
    totals.records += records.len() as u64;
    totals.live += live;
    totals.corrupt += scan.corruptions.len() as u64;
    totals.torn_tails += u64::from(torn_tail.is_some());
    if !opts.verify || !scan.corruptions.is_empty() || torn_tail.is_some() {
        if opts.json {
            println!(
                "{}",
                json!({"type": "segment", "file": name, "base": base, "first_seq": first, "last_seq": last,
                       "records": records.len(), "live": live, "acked": records.len() as u64 - live,
                       "bytes_used": scan.valid_end, "file_bytes": bytes.len(), "corrupt": scan.corruptions.len()})
            );
        } else {
            let range = match (first, last) {
                (Some(f), Some(l)) => format!("{f}..={l}"),
                _ => "empty".into(),
            };
            println!(
                "{name}: base {base}, seq {range}, {} records, {live} live, {} acked, {} of {} bytes used, {} corrupt",
                records.len(),
                records.len() as u64 - live,
                scan.valid_end,
                bytes.len(),
                scan.corruptions.len()
            );
        }
    }
    if opts.records && !opts.verify {
        for r in &records {
            let h = &r.header;
            let body = &bytes[r.offset + record::HEADER_LEN..r.offset + h.total_len()];
            let state = if acked.contains(&h.seq) {
                "acked"
            } else {
                "live"
            };
            let persistent = h.is_persistent();
            if opts.json {
                println!(
                    "{}",
                    json!({"type": "record", "file": name, "seq": h.seq, "offset": r.offset, "length": h.len,
                           "flags": h.flags, "persistent": persistent, "timestamp": h.timestamp,
                           "crc": "ok", "state": state, "preview": preview(body)})
                );
            } else {
                println!(
                    "  seq {} @{} len {} flags {:#x}{} ts {} crc ok {} {:?}",
                    h.seq,
                    r.offset,
                    h.len,
                    h.flags,
                    if persistent { " (persistent)" } else { "" },
                    h.timestamp,
                    state,
                    preview(body)
                );
            }
        }
    }
    if let Some(c) = &torn_tail {
        let why = "bytes after the last valid record: a write cut short by a crash, never confirmed; recovery discards it";
        print_stretch(opts, &name, c, ("torn_tail", "torn tail", why));
    }
    for c in &scan.corruptions {
        print_stretch(
            opts,
            &name,
            c,
            ("corruption", "CORRUPT", "bytes unreadable"),
        );
    }
    Ok(())
}

/// Prints a bad stretch of segment `name`: as JSON of type `kind.0`, or as text
/// `kind.1 @OFFSET: REASON (N kind.2)`.
fn print_stretch(opts: &Options, name: &str, c: &segment::Corruption, kind: (&str, &str, &str)) {
    if opts.json {
        println!(
            "{}",
            json!({"type": kind.0, "file": name, "offset": c.offset, "bytes_dropped": c.bytes_dropped, "reason": c.reason})
        );
    } else {
        println!(
            "  {} @{}: {} ({} {})",
            kind.1, c.offset, c.reason, c.bytes_dropped, kind.2
        );
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("warren-dump: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut files = Vec::new();
    if let Err(e) = find_segments(&opts.path, &mut files) {
        eprintln!("warren-dump: {}: {e}", opts.path.display());
        return ExitCode::from(2);
    }
    let heads = match head_bases(&files) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("warren-dump: {}: {e}", opts.path.display());
            return ExitCode::from(2);
        }
    };
    let mut totals = Totals::default();
    for file in &files {
        let dir = file.parent().unwrap_or(Path::new(""));
        let is_head = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(segment::parse_segment_file_name)
            .is_some_and(|base| heads.get(dir) == Some(&base));
        if let Err(e) = dump_segment(file, is_head, &opts, &mut totals) {
            eprintln!("warren-dump: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    if opts.json {
        println!(
            "{}",
            json!({"type": "summary", "segments": totals.segments, "records": totals.records,
                   "live": totals.live, "corrupt": totals.corrupt, "torn_tails": totals.torn_tails})
        );
    } else {
        println!(
            "{} segments, {} records, {} live, {} corrupt, {} torn tail(s)",
            totals.segments, totals.records, totals.live, totals.corrupt, totals.torn_tails
        );
    }
    if totals.corrupt > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

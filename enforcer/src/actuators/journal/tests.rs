use std::io::Write;

use super::*;

#[test]
fn outcome_names_are_their_serde_names() {
    for o in [
        Outcome::Intent,
        Outcome::Applied,
        Outcome::DryRun,
        Outcome::Refused,
        Outcome::Failed,
    ] {
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::Value::String(o.name().into())
        );
    }
}

fn entry(seq: u64, outcome: Outcome) -> Entry {
    Entry {
        at: 1.0,
        seq,
        stage: "throttle".into(),
        action: "freeze".into(),
        target: Some("yarn/container_1".into()),
        class: Some("offline".into()),
        priority: Some("P3".into()),
        reason: serde_json::json!({"trigger": "node_cpu", "value": 0.95}),
        outcome,
        detail: None,
        pod: None,
        pod_uid: None,
        rule: None,
    }
}

/// One action: its intent, then its outcome.
fn act(j: &mut Journal) -> u64 {
    let seq = j.next_seq();
    j.append(&entry(seq, Outcome::Intent)).unwrap();
    j.append(&entry(seq, Outcome::Applied)).unwrap();
    seq
}

fn rotating(path: &Path, segment_size: u64, segments: usize) -> JournalConfig {
    JournalConfig {
        path: path.to_path_buf(),
        segment_size,
        segments,
    }
}

fn names(path: &Path) -> Vec<String> {
    segment_paths(path)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn tear(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn appends_survive_reopen_and_sequence_numbers_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/journal.jsonl");
    let mut j = Journal::open(&path).unwrap();
    act(&mut j);
    drop(j);
    // A torn line from a crash mid-write is skipped, not fatal.
    tear(&path, b"{\"at\": 2.0, \"seq\"");
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.next_seq(), 2);
    let entries = read(&path).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].outcome, Outcome::Applied);
    // What is appended after the torn line is not glued to it.
    j.append(&entry(2, Outcome::Refused)).unwrap();
    let entries = read(&path).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 1, 2]);
    assert_eq!(j.write_failures(), 0);
}

#[test]
fn rotation_shifts_segments_keeps_the_count_and_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let line = serde_json::to_vec(&entry(100, Outcome::Intent))
        .unwrap()
        .len() as u64
        + 1;
    let mut j = Journal::open(rotating(&path, 4096, 3)).unwrap();
    let mut last = 0;
    // About 4096 / 2 / line actions per segment; enough for several rotations.
    for _ in 0..200 {
        last = act(&mut j);
    }
    assert_eq!(
        names(&path),
        ["journal.jsonl.2", "journal.jsonl.1", "journal.jsonl"]
    );
    for p in segment_paths(&path).unwrap() {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4096, "{}: {size} bytes", p.display());
        // Rotated segments were full: the next pair would not have fitted.
        if p != path {
            assert!(size + 2 * line > 4096, "{}: {size} bytes", p.display());
        }
    }
    let entries = read(&path).unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), last);
    // The oldest segments were deleted whole: no outcome without its intent.
    assert!(seqs[0] > 1);
    assert_eq!(entries[0].outcome, Outcome::Intent);
    assert_eq!(entries.len() % 2, 0);
    for pair in entries.chunks(2) {
        assert_eq!(
            (pair[0].seq, &pair[0].outcome, &pair[1].outcome),
            (pair[1].seq, &Outcome::Intent, &Outcome::Applied)
        );
    }
    // The streaming reader sees the same.
    let streamed: Vec<Entry> = entries_of(&path);
    assert_eq!(streamed, entries);
    // Fewer segments kept after a restart: the extra one goes at the next rotation.
    drop(j);
    let mut j = Journal::open(rotating(&path, 4096, 2)).unwrap();
    assert_eq!(j.next_seq(), last + 1);
    for _ in 0..40 {
        act(&mut j);
    }
    assert_eq!(names(&path), ["journal.jsonl.1", "journal.jsonl"]);
}

fn entries_of(path: &Path) -> Vec<Entry> {
    entries(path).unwrap().map(Result::unwrap).collect()
}

#[test]
fn an_intent_and_its_outcome_stay_in_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut j = Journal::open(rotating(&path, 4096, 8)).unwrap();
    // Interleaved actions: an intent open while others come and go.
    for _ in 0..60 {
        let outer = j.next_seq();
        j.append(&entry(outer, Outcome::Intent)).unwrap();
        let refused = j.next_seq();
        j.append(&entry(refused, Outcome::Refused)).unwrap();
        act(&mut j);
        j.append(&entry(outer, Outcome::Failed)).unwrap();
    }
    assert!(segment_paths(&path).unwrap().len() > 2);
    for p in segment_paths(&path).unwrap() {
        let text = std::fs::read_to_string(&p).unwrap();
        let mut open = BTreeSet::new();
        for e in text
            .lines()
            .map(|l| serde_json::from_str::<Entry>(l).unwrap())
        {
            match e.outcome {
                Outcome::Intent => assert!(open.insert(e.seq)),
                Outcome::Refused => {}
                _ => assert!(
                    open.remove(&e.seq),
                    "{}: outcome {} without intent",
                    p.display(),
                    e.seq
                ),
            }
        }
        assert!(
            open.is_empty(),
            "{}: intents {open:?} concluded elsewhere",
            p.display()
        );
    }
}

#[test]
fn an_intent_never_concluded_holds_the_rotation_back_a_little_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let line = serde_json::to_vec(&entry(100, Outcome::Intent))
        .unwrap()
        .len() as u64
        + 1;
    let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
    // Outcomes under a number of their own: every intent stays open.
    for _ in 0..100 {
        let intent = j.next_seq();
        j.append(&entry(intent, Outcome::Intent)).unwrap();
        let outcome = j.next_seq();
        j.append(&entry(outcome, Outcome::Applied)).unwrap();
    }
    assert_eq!(segment_paths(&path).unwrap().len(), 4);
    assert!(j.open_intents.len() <= MAX_OPEN_INTENTS);
    for p in segment_paths(&path).unwrap() {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4096 + 1024 + line, "{}: {size} bytes", p.display());
    }
    let seqs: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn the_next_sequence_number_comes_from_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
    let mut last = 0;
    for _ in 0..30 {
        last = act(&mut j);
    }
    drop(j);
    // A long history: only the end is read, and a window shorter than a line grows.
    assert_eq!(segments::last_seq_in(&path, 10).unwrap(), Some(last));
    assert_eq!(segments::last_seq(&path, 300).unwrap(), Some(last));
    // A torn last line is skipped.
    tear(&path, b"{\"at\": 2.0, \"seq\": 999");
    assert_eq!(segments::last_seq_in(&path, 64 * 1024).unwrap(), Some(last));
    // A crash between the rename of the live segment and the creation of the new one:
    // the number comes from `.1`.
    segments::rotate(&path, 4).unwrap();
    assert!(!path.exists());
    let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
    assert_eq!(j.next_seq(), last + 1);
    // So it does when the live segment exists but is empty.
    drop(j);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
    assert_eq!(j.next_seq(), last + 1);
    // Strictly increasing across restarts and rotations.
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
        for _ in 0..25 {
            seqs.push(act(&mut j));
        }
    }
    assert!(seqs[0] > last);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let all: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    assert!(all.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_gap_left_by_a_crash_mid_rotation_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut j = Journal::open(rotating(&path, 4096, 5)).unwrap();
    while segment_paths(&path).unwrap().len() < 3 {
        act(&mut j);
    }
    drop(j);
    // The crash: `.2` and `.1` were shifted, the live segment not renamed yet.
    std::fs::rename(segments::numbered(&path, 2), segments::numbered(&path, 3)).unwrap();
    std::fs::rename(segments::numbered(&path, 1), segments::numbered(&path, 2)).unwrap();
    let seqs: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]));
    let mut j = Journal::open(rotating(&path, 4096, 5)).unwrap();
    assert_eq!(j.next_seq(), seqs.last().unwrap() + 1);
    // The next rotation fills the gap: nothing lost, nothing reordered.
    while !segments::numbered(&path, 1).exists() {
        act(&mut j);
    }
    assert_eq!(
        names(&path),
        [
            "journal.jsonl.3",
            "journal.jsonl.2",
            "journal.jsonl.1",
            "journal.jsonl"
        ]
    );
    let after: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(&after[..seqs.len()], &seqs[..]);
    assert!(after.len() > seqs.len());
    assert!(after.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_rotation_retried_shifts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut j = Journal::open(rotating(&path, 4096, 4)).unwrap();
    while segment_paths(&path).unwrap().len() < 3 {
        act(&mut j);
    }
    drop(j);
    let seqs: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    // A rotation that failed after its shifts, before renaming the live segment, then
    // its retry: the older segments shift once.
    std::fs::rename(segments::numbered(&path, 2), segments::numbered(&path, 3)).unwrap();
    std::fs::rename(segments::numbered(&path, 1), segments::numbered(&path, 2)).unwrap();
    segments::rotate(&path, 4).unwrap();
    assert_eq!(
        names(&path),
        ["journal.jsonl.3", "journal.jsonl.2", "journal.jsonl.1"]
    );
    let after: Vec<u64> = read(&path).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(after, seqs);
}

#[test]
fn a_full_disk_does_not_fail_an_append() {
    // /dev/full: every write fails with ENOSPC.
    let full = Path::new("/dev/full");
    assert!(
        std::fs::OpenOptions::new().append(true).open(full).is_ok(),
        "/dev/full must be writable: the test stands for a full file system with it"
    );
    let mut j = Journal::open(full).unwrap();
    assert_eq!(j.next_seq(), 1);
    j.append(&entry(1, Outcome::Intent)).unwrap();
    j.append(&entry(1, Outcome::Applied)).unwrap();
    assert_eq!(j.write_failures(), 2);
}

#[test]
fn an_unusable_journal_fails_to_open_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let Err(e) = Journal::open(&file.join("journal.jsonl")) else {
        panic!("opened a journal under a file");
    };
    let e = e.to_string();
    assert!(
        e.contains("file/journal.jsonl")
            && e.contains("cannot create its directory")
            && e.contains("daemon.journal")
            && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn no_journal_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        read(&dir.path().join("none/journal.jsonl"))
            .unwrap()
            .is_empty()
    );
    assert!(
        segment_paths(&dir.path().join("journal.jsonl"))
            .unwrap()
            .is_empty()
    );
}

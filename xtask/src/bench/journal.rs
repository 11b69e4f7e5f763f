//! Journal benches: append rate against raw write+fsync, replay and nonce-store open
//! against a plain read of the same file.

use super::*;

/// A nonce-store record: the journal's most frequent small record.
fn nonce_record(i: usize) -> NonceRecord {
    let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    NonceRecord {
        nonce: format!("{mixed:016x}{i:016x}"),
        keep_until: 4_102_444_800, // 2100-01-01: never pruned while benched
    }
}

pub(super) fn journal_append(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.appends;
    let records: Vec<NonceRecord> = (0..n).map(nonce_record).collect();
    // The anchor writes the very bytes the journal writes, encoded beforehand: what is left
    // is the journal's own overhead (encoding, checksum, bookkeeping) on top of the disk's.
    let mut lines = Vec::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        let mut line = Vec::new();
        codec::encode_line(i as u64 + 1, r, &mut line)?;
        lines.push(line);
    }
    let mut log = Log::<NonceRecord>::open(ctx.dir.join("append.log"))?.log;
    let raw_path = ctx.dir.join("append.raw");
    let mut raw = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .with_context(|| format!("opening {}", raw_path.display()))?;

    // Interleaved in rounds, alternating which goes first, so a change in the machine's load
    // or the disk's mood hits both alike.
    let rounds = (n / 10).max(1);
    let (mut t_log, mut t_raw) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let range = round * n / rounds..(round + 1) * n / rounds;
        for phase in 0..2 {
            let start = Instant::now();
            if (round + phase) % 2 == 0 {
                for r in &records[range.clone()] {
                    log.append(r)?;
                }
                t_log += start.elapsed();
            } else {
                for l in &lines[range.clone()] {
                    raw.write_all(l)?;
                    raw.sync_data()?;
                }
                t_raw += start.elapsed();
            }
        }
    }
    ensure!(
        log.len() == n as u64,
        "the journal holds {} records, not {n}",
        log.len()
    );
    let rate = |t: Duration| n as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE);
    let (log_rate, raw_rate) = (rate(t_log), rate(t_raw));
    let ratio = log_rate / raw_rate;
    Ok(vec![Row {
        floor: format!("disk write+fsync {raw_rate:.0}/s"),
        name: format!("journal append (N={n})"),
        figure: format!("{log_rate:.0} appends/s"),
        budget: "≥ 0.90× anchor rate".to_owned(),
        anchor: format!("raw write_all+sync_data {raw_rate:.0}/s"),
        ratio: rate_ratio(ratio),
        verdict: at_least(ratio, 0.9),
        notes: vec![format!(
            "one writer, {}-byte records (NonceRecord), same directory; {rounds} interleaved \
             rounds; mean {} per append vs {} raw",
            lines.first().map_or(0, Vec::len),
            fmt_dur(t_log / n.max(1) as u32),
            fmt_dur(t_raw / n.max(1) as u32)
        )],
    }])
}

/// The file of `sizes.records` nonce records the replay and nonce-store benches open, written
/// once per run with `Log::compact` (the journal's own bulk writer).
fn records_file(ctx: &mut Ctx) -> Result<PathBuf> {
    if let Some(p) = &ctx.records_file {
        return Ok(p.clone());
    }
    let n = ctx.sizes.records;
    let path = ctx.dir.join("records.log");
    let records: Vec<NonceRecord> = (0..n).map(nonce_record).collect();
    let start = Instant::now();
    let mut log = Log::<NonceRecord>::open(&path)?.log;
    log.compact(&records)?;
    drop(log);
    let size = fs::metadata(&path)?.len();
    println!(
        "(fixture: {n} records, {:.1} MiB, written with Log::compact in {})",
        size as f64 / MIB,
        fmt_dur(start.elapsed())
    );
    ctx.records_file = Some(path.clone());
    Ok(path)
}

/// The anchor of both open benches: read the file and split it into lines, nothing else.
fn raw_read_split(path: &Path) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let buf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let lines = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    Ok((start.elapsed(), black_box(lines)))
}

pub(super) fn journal_replay(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.records;
    let path = records_file(ctx)?;
    let (mut replays, mut anchors) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t, lines) = raw_read_split(&path)?;
        ensure!(lines == n, "the records file has {lines} lines, not {n}");
        anchors.push(t);

        let start = Instant::now();
        let mut seen = 0usize;
        let (log, torn) = Log::<NonceRecord>::open_visit(&path, Arc::new(RealFs), |r| {
            black_box(&r);
            seen += 1;
        })?;
        replays.push(start.elapsed());
        drop(log);
        ensure!(torn.is_none(), "the records file had a torn tail: {torn:?}");
        ensure!(seen == n, "replay visited {seen} records, not {n}");
    }
    let (replay, anchor) = (median(replays), median(anchors));
    let (budget, budget_text) = scaled_budget(
        Duration::from_secs(1),
        n as u64,
        Sizes::full().records as u64,
    );
    Ok(vec![Row {
        floor: NO_FLOOR.to_owned(),
        name: format!("journal replay (N={n})"),
        figure: fmt_dur(replay),
        budget: budget_text,
        anchor: format!("read+line split {}", fmt_dur(anchor)),
        ratio: time_ratio(replay, anchor),
        verdict: within(replay, budget),
        notes: vec![format!(
            "Log::open_visit (framing, seq, CRC-32, serde decode of every record), median of 3; \
             file in the page cache, as is the anchor's; {}",
            throughput(n, replay, "records")
        )],
    }])
}

pub(super) fn nonce_open(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.records;
    let path = records_file(ctx)?;
    let (mut opens, mut anchors) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t, lines) = raw_read_split(&path)?;
        ensure!(lines == n, "the records file has {lines} lines, not {n}");
        anchors.push(t);

        let start = Instant::now();
        let store = felhom_authz::FileNonceStore::open(&path)?;
        opens.push(start.elapsed());
        ensure!(
            store.len() == n,
            "the store holds {} nonces, not {n}",
            store.len()
        );
        drop(store);
    }
    let (open, anchor) = (median(opens), median(anchors));
    let (budget, budget_text) = scaled_budget(
        Duration::from_secs(1),
        n as u64,
        Sizes::full().records as u64,
    );
    Ok(vec![Row {
        floor: NO_FLOOR.to_owned(),
        name: format!("nonce store open (N={n})"),
        figure: fmt_dur(open),
        budget: budget_text,
        anchor: format!("read+line split {}", fmt_dur(anchor)),
        ratio: time_ratio(open, anchor),
        verdict: within(open, budget),
        notes: vec![
            "FileNonceStore::open: journal replay plus the nonce index, median of 3".to_owned(),
        ],
    }])
}

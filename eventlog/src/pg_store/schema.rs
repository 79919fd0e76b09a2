//! The PostgreSQL backend's tables and statements.
//!
//! Invariants backed by constraints, so that a bug in any node is refused by the database
//! rather than written: `seq` is the primary key; each `prev_hash` appears once (two records
//! chained to one predecessor is a fork); `(stream_id, version)` is unique; a command id is
//! the primary key of `oacis_commands`. The one row of `oacis_log_head` holds the last
//! committed record's (seq, hash): every append locks it first, which orders the log.
//!
//! `oacis_keys` shares the personal-data keys between the servers on one log: each key's
//! journal record, wrapped under the operator's key-encryption key (never in plain), or NULL
//! once an erasure destroyed it.
//!
//! `record` holds the exact stored bytes of `FORMAT.md` (body and hash), the same bytes the
//! sled backend stores; the other columns are copies for indexes and constraints.

/// The store format this build writes, kept in the head row.
pub(crate) const FORMAT: &str = "oacis.pg.v1";

/// The NOTIFY channel: its payload is the committed head's seq (a tailer reads the head for
/// a seq past what its node has published).
pub(crate) const CHANNEL: &str = "oacis_log";

/// Creates the tables if missing, under a transaction-scoped advisory lock so that nodes
/// starting together do not race.
///
/// Stream ids use the "C" collation: they are only ever compared for equality, and byte
/// comparisons in the `(stream_id, version)` index cost less than the database's default
/// collation's (measured: 64 writers 25,116-28,454 appends/s against 22,640-22,691 in the
/// same runs, see BENCHMARKS.md). A table made with the default collation is changed once,
/// at open (its index is rebuilt).
///
/// Each previous hash appears once by an exclusion constraint over a hash index (`=` on
/// every pair of rows: a uniqueness constraint), not a B-tree unique index: hashes are random,
/// so every insert lands on another page of the index; a hash index keeps a 4-byte code per
/// row where a B-tree keeps the 32 bytes, and an insert reads one bucket page where a B-tree
/// descends its levels (a million hashes inserted in random order: B-tree 73 MB, hash index
/// 37 MB; measured with a
/// million records and the server's default cache: 64 writers 37,861/s against 32,205/s,
/// 100-event batches 92,664/s against 63,817/s, see BENCHMARKS.md). A table made with the
/// B-tree constraint is changed once, at open (3.2 s for a million records on the benchmark
/// machine, under the table's exclusive lock).
pub(crate) const CREATE: &str = r#"
BEGIN;
SELECT pg_advisory_xact_lock(7357001);
CREATE TABLE IF NOT EXISTS oacis_log_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    recorded_at bigint NOT NULL,
    format text NOT NULL
);
INSERT INTO oacis_log_head (id, seq, hash, recorded_at, format)
    VALUES (true, 0, decode(repeat('00', 32), 'hex'), 0, 'oacis.pg.v1')
    ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS oacis_events (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    stream_id text COLLATE "C" NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    command_id uuid NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    record bytea NOT NULL,
    UNIQUE (stream_id, version),
    CONSTRAINT oacis_events_prev_hash_once EXCLUDE USING hash (prev_hash WITH =)
);
CREATE TABLE IF NOT EXISTS oacis_keys (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 16),
    record bytea
);
CREATE TABLE IF NOT EXISTS oacis_commands (
    command_id uuid PRIMARY KEY,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL
);
DO $$
BEGIN
    -- Created if missing only: replacing it would need its owner's role at every open.
    IF to_regprocedure('oacis_claim_head(bigint, bytea, bigint, bigint, bytea)') IS NULL THEN
        CREATE FUNCTION oacis_claim_head(new_seq bigint, new_hash bytea, new_recorded_at bigint,
            old_seq bigint, old_hash bytea) RETURNS void LANGUAGE plpgsql AS $claim$
        BEGIN
            UPDATE oacis_log_head SET seq = new_seq, hash = new_hash, recorded_at = new_recorded_at
                WHERE id AND seq = old_seq AND hash = old_hash;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'the log''s head is no longer at seq %', old_seq USING ERRCODE = 'OA409';
            END IF;
        END
        $claim$;
    END IF;
END
$$;
DO $$
BEGIN
    -- Tables made before stream ids were compared byte by byte: their index is rebuilt once.
    IF (SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
        WHERE a.attrelid = 'oacis_events'::regclass AND a.attname = 'stream_id') <> 'C' THEN
        ALTER TABLE oacis_events ALTER COLUMN stream_id TYPE text COLLATE "C";
    END IF;
    -- Tables made before previous hashes were kept once by a hash index: the B-tree unique
    -- constraint is replaced once.
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'oacis_events'::regclass
        AND conname = 'oacis_events_prev_hash_key') THEN
        ALTER TABLE oacis_events ADD CONSTRAINT oacis_events_prev_hash_once
            EXCLUDE USING hash (prev_hash WITH =);
        ALTER TABLE oacis_events DROP CONSTRAINT oacis_events_prev_hash_key;
    END IF;
END
$$;
COMMIT;
"#;

/// The primary key of `oacis_commands` (PostgreSQL's default name for it).
pub(crate) const COMMANDS_KEY: &str = "oacis_commands_pkey";

/// The head, read without a lock (a committed value).
pub(crate) const HEAD: &str = "SELECT seq, hash, recorded_at, format FROM oacis_log_head WHERE id";

/// The head, locked until the transaction ends: the log's single-writer fence.
pub(crate) const LOCK_HEAD: &str = "SELECT seq, hash, recorded_at FROM oacis_log_head WHERE id FOR UPDATE";

/// The hash of the record at a seq.
pub(crate) const HASH_AT: &str = "SELECT hash FROM oacis_events WHERE seq = $1";

/// The spans of command ids seen before.
pub(crate) const COMMANDS: &str =
    "SELECT command_id, first_seq, last_seq FROM oacis_commands WHERE command_id = ANY($1::uuid[])";

/// The versions of streams.
/// (Each is the last entry of the `(stream_id, version)` index: no table of versions is
/// written, so an append writes its records, its command id and the head, nothing else.)
pub(crate) const STREAMS: &str =
    "SELECT s, (SELECT max(version) FROM oacis_events WHERE stream_id = s) FROM unnest($1::text[]) AS s";

/// The stream and version of the records after a seq (`$1`), in order, at most `$2`: what
/// was committed since a writer's known versions.
pub(crate) const CATCH_UP: &str = "SELECT stream_id, version FROM oacis_events WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Stored records by seq range (inclusive), in order.
pub(crate) const RANGE: &str =
    "SELECT seq, record FROM oacis_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3";

/// Stored records of one stream from a version, in order.
pub(crate) const STREAM: &str =
    "SELECT seq, record FROM oacis_events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3";

/// One statement for a group's records, whatever their number.
pub(crate) const INSERT_EVENTS: &str =
    "INSERT INTO oacis_events (seq, stream_id, version, command_id, prev_hash, hash, record)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bytea[], $6::bytea[], $7::bytea[])";

/// The group's command ids and spans.
pub(crate) const INSERT_COMMANDS: &str = "INSERT INTO oacis_commands (command_id, first_seq, last_seq)
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])";

/// Moves the head, checking it is where the transaction found it.
pub(crate) const MOVE_HEAD: &str =
    "UPDATE oacis_log_head SET seq = $1, hash = $2, recorded_at = $3 WHERE id AND seq = $4 AND hash = $5";

/// Moves the head like [`MOVE_HEAD`] (same parameters), as the first statement of a
/// transaction that has not read it: the row is locked by the move, and the transaction fails
/// with [`HEAD_MOVED`] if the head is no longer where the writer left it.
pub(crate) const CLAIM_HEAD: &str = "SELECT oacis_claim_head($1, $2, $3, $4, $5)";

/// The SQLSTATE `oacis_claim_head` raises when the head moved.
pub(crate) const HEAD_MOVED: &str = "OA409";

/// Every shared data key (a NULL record: destroyed by an erasure).
pub(crate) const KEYS_ALL: &str = "SELECT id, record FROM oacis_keys";

/// Shared data keys by id.
pub(crate) const KEYS_OF: &str = "SELECT id, record FROM oacis_keys WHERE id = ANY($1::bytea[])";

/// Shares keys (wrapped under the KEK); a key destroyed before stays destroyed.
pub(crate) const SHARE_KEYS: &str =
    "INSERT INTO oacis_keys (id, record) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (id) DO NOTHING";

/// Destroys shared keys: their wrapped bytes replaced by NULL (a tombstone every server reads).
pub(crate) const DESTROY_KEYS: &str = "INSERT INTO oacis_keys (id, record) SELECT unnest($1::bytea[]), NULL::bytea
    ON CONFLICT (id) DO UPDATE SET record = NULL";

/// Wakes every node's tailer once the transaction commits.
pub(crate) const NOTIFY: &str = "SELECT pg_notify('oacis_log', $1)";

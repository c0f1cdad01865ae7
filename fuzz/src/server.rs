//! The targets of the server's own files (quarry-server's parsers): the
//! operations journal, the API token file, and a primary's
//! `collection.json` as its standby receives it. The engine's formats are
//! in the crate root.

/// `quarry_server::op_journal::parse` (`operations.jsonl`): what parses
/// re-serialises, line by line, to a journal that parses the same.
pub fn operations_journal(data: &[u8]) {
    use quarry_server::op_journal::{parse, Record};
    let Ok(p) = parse(data) else {
        return;
    };
    assert!(p.valid_len <= data.len());
    assert!(p
        .entries
        .iter()
        .all(|e| matches!(e.start, Record::Start { n, .. } if n < p.next)));
    let mut again = Vec::new();
    for e in &p.entries {
        for r in std::iter::once(&e.start).chain(e.end.as_ref()) {
            again.extend(serde_json::to_vec(r).expect("serialises"));
            again.push(b'\n');
        }
    }
    let q = parse(&again).expect("a re-serialised journal parses");
    assert_eq!(q.entries, p.entries);
    assert_eq!(q.valid_len, again.len());
}

/// `quarry_server::auth::parse_tokens` (`api_token_file`): an accepted
/// file's every token has its role and no other string does, and a
/// refusal never echoes a token of the file.
pub fn api_tokens(data: &[u8]) {
    use quarry_server::auth::{parse_tokens, MIN_TOKEN};
    match parse_tokens(data) {
        Ok(t) => {
            let text = std::str::from_utf8(data).expect("accepted text is UTF-8");
            let mut lines = 0;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let (role, token) = line.split_once(char::is_whitespace).expect("two words");
                let token = token.trim();
                assert!(token.len() >= MIN_TOKEN);
                let got = t.role_of(token.as_bytes()).expect("a listed token has a role");
                assert_eq!(format!("{got:?}").to_lowercase(), role);
                // A byte more is another token (a NUL is never in one).
                assert_eq!(t.role_of(&[token.as_bytes(), b"\0"].concat()), None);
                lines += 1;
            }
            assert!(lines > 0);
        }
        Err(e) => {
            for word in String::from_utf8_lossy(data).split_whitespace() {
                assert!(
                    word.len() < MIN_TOKEN || !e.contains(word),
                    "a refusal echoes {word:?}: {e}"
                );
            }
        }
    }
}

/// `quarry_server::meta::CollectionMeta::from_peer` (a primary's
/// `collection.json` as a standby receives it): what it accepts
/// re-serialises to a value it accepts again, unchanged.
pub fn collection_meta(data: &[u8]) {
    use quarry_server::meta::CollectionMeta;
    let Ok(m) = CollectionMeta::from_peer(data) else {
        return;
    };
    let again = serde_json::to_vec(&m).expect("serialises");
    let n = CollectionMeta::from_peer(&again).expect("a re-serialised collection.json is accepted");
    assert_eq!(serde_json::to_vec(&n).expect("serialises"), again);
    let _ = (m.metric(), m.stored(), m.record_bytes());
}

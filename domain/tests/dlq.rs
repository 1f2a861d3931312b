//! The dead-letter store as operators use it: ingest once, filters, stats,
//! archive/restore/purge, crash-safe replay bookkeeping, the link between a
//! replayed letter and the letter it failed again as, and the existence
//! checks the CLI's selections rely on.

use atelier_domain::store::dlq::{self, Filter, LetterRef, NewDeadLetter};
use atelier_domain::testing::TestDb;
use chrono::{TimeDelta, Utc};
use uuid::Uuid;

fn letter(handler: &str, kind: &str, error: &str, hours_ago: i64) -> NewDeadLetter {
    let at = Utc::now() - TimeDelta::hours(hours_ago);
    NewDeadLetter {
        dead_letter_key: Uuid::now_v7(),
        handler: handler.into(),
        event_id: Some(Uuid::now_v7()),
        event_type: Some("sale.created".into()),
        body: br#"{"id":"x"}"#.to_vec(),
        headers: serde_json::json!({"x-atelier-attempt": 3}),
        attempts: 4,
        first_failed_at: at - TimeDelta::minutes(5),
        last_failed_at: at,
        last_error: error.into(),
        error_kind: kind.into(),
        replay_id: None,
    }
}

#[tokio::test]
async fn ingest_is_idempotent_and_filters_find_letters() {
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    let a = letter("notifications", "provider_5xx", "provider answered 503", 0);
    assert!(dlq::ingest(&mut c, &a).await.unwrap());
    assert!(!dlq::ingest(&mut c, &a).await.unwrap(), "a redelivered dead letter is stored once");
    dlq::ingest(&mut c, &letter("production", "rule", "sale is a draft", 30)).await.unwrap();
    dlq::ingest(&mut c, &letter("notifications", "provider_5xx", "provider answered 502", 200)).await.unwrap();

    let (_, n) = dlq::list(&mut c, &Filter::default(), 10, 0).await.unwrap();
    assert_eq!(n, 3);
    let by = |f: Filter| f;
    let (rows, n) =
        dlq::list(&mut c, &by(Filter { handler: Some("notifications".into()), ..Default::default() }), 10, 0)
            .await
            .unwrap();
    assert_eq!((n, rows[0].fingerprint.as_str()), (2, "notifications:provider_5xx"));
    let (_, n) = dlq::list(&mut c, &Filter { error: Some("DRAFT".into()), ..Default::default() }, 10, 0).await.unwrap();
    assert_eq!(n, 1, "error text matches case-insensitively");
    let (_, n) = dlq::list(&mut c, &Filter { error: Some("%".into()), ..Default::default() }, 10, 0).await.unwrap();
    assert_eq!(n, 0, "wildcards in the search are literal");
    let since = Some(Utc::now() - TimeDelta::hours(48));
    let (_, n) = dlq::list(&mut c, &Filter { since, ..Default::default() }, 10, 0).await.unwrap();
    assert_eq!(n, 2);
    let (page, n) = dlq::list(&mut c, &Filter::default(), 2, 2).await.unwrap();
    assert_eq!((page.len(), n), (1, 3));
    assert!(dlq::list(&mut c, &Filter { status: Some("gone".into()), ..Default::default() }, 10, 0).await.is_err());

    let s = dlq::stats(&mut c, Utc::now()).await.unwrap();
    assert_eq!(s.total, 3);
    assert_eq!(s.by_handler["notifications"], 2);
    assert_eq!(s.by_age["< 1h"], 1);
    assert_eq!(s.by_age.get("1d – 7d"), Some(&1), "30 hours old");
    assert_eq!(s.by_age["> 7d"], 1);
}

#[tokio::test]
async fn archive_restore_and_purge_only_archived() {
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    for i in 0..3 {
        dlq::ingest(&mut c, &letter("production", "rule", &format!("e{i}"), i)).await.unwrap();
    }
    let (rows, _) = dlq::list(&mut c, &Filter::default(), 10, 0).await.unwrap();
    let first = Filter { ids: vec![rows[0].id], ..Default::default() };
    assert_eq!(dlq::purge(&mut c, &first).await.unwrap(), 0, "a dead letter is never purged");
    assert_eq!(dlq::archive(&mut c, &first).await.unwrap(), 1);
    assert_eq!(dlq::count_archived(&mut c, &Filter::default()).await.unwrap(), 1);
    assert_eq!(dlq::restore(&mut c, &first).await.unwrap(), 1);
    assert_eq!(dlq::archive(&mut c, &Filter::default()).await.unwrap(), 3);
    assert_eq!(dlq::purge(&mut c, &first).await.unwrap(), 1);
    let (_, n) = dlq::list(&mut c, &Filter::default(), 10, 0).await.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn an_interrupted_replay_resumes_with_the_same_replay_id() {
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    dlq::ingest(&mut c, &letter("notifications", "provider_5xx", "503", 0)).await.unwrap();
    let id = dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap()[0].id;

    let (_, first) = dlq::begin_replay(&mut c, id, "ops@example", "atelier.q.notifications").await.unwrap().unwrap();
    // The run crashed before the broker confirmed: the letter is still a candidate...
    let again = dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].status, "replaying");
    // ...and the next run resumes the same replay rather than starting another.
    let (_, second) = dlq::begin_replay(&mut c, id, "ops@example", "atelier.q.notifications").await.unwrap().unwrap();
    assert_eq!(first.replay_id, second.replay_id);
    dlq::finish_replay(&mut c, &second).await.unwrap();

    let shown = dlq::show(&mut c, LetterRef::Id(id)).await.unwrap();
    let (letter, replays) = (shown.letter, shown.replays);
    assert_eq!(letter.status, "replayed");
    assert_eq!(replays.len(), 1);
    assert!(replays[0].published_at.is_some());
    assert!(dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap().is_empty());
    assert!(
        dlq::begin_replay(&mut c, id, "ops", "q").await.unwrap().is_none(),
        "a replayed letter is not replayed again"
    );
}

#[tokio::test]
async fn a_replay_that_fails_again_is_linked_both_ways() {
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    let original = letter("notifications", "provider_5xx", "503", 1);
    dlq::ingest(&mut c, &original).await.unwrap();
    let id = dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap()[0].id;
    let (_, replay) = dlq::begin_replay(&mut c, id, "ops", "atelier.q.notifications").await.unwrap().unwrap();
    dlq::finish_replay(&mut c, &replay).await.unwrap();

    // The replayed message failed again: its dead letter carries the replay id.
    let again =
        NewDeadLetter { replay_id: Some(replay.replay_id), ..letter("notifications", "provider_5xx", "502", 0) };
    assert!(dlq::ingest(&mut c, &again).await.unwrap());
    assert!(!dlq::ingest(&mut c, &again).await.unwrap(), "a redelivery is still stored once");
    let new_id = dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap()[0].id;
    assert_ne!(new_id, id);

    let first = dlq::show(&mut c, LetterRef::Id(id)).await.unwrap();
    assert_eq!(first.replays[0].failed_again_as, Some(new_id), "the replay says what it failed again as");
    assert_eq!(first.replay_of, None);
    let second = dlq::show(&mut c, LetterRef::Key(again.dead_letter_key)).await.unwrap();
    assert_eq!(second.letter.id, new_id, "a letter is found by its dead-letter id too");
    assert_eq!(second.replay_of, Some(id));

    // A letter naming a replay nobody recorded (purged meanwhile) is stored unlinked.
    let stray = NewDeadLetter { replay_id: Some(Uuid::now_v7()), ..letter("notifications", "provider_5xx", "x", 0) };
    assert!(dlq::ingest(&mut c, &stray).await.unwrap());
    assert_eq!(dlq::show(&mut c, LetterRef::Key(stray.dead_letter_key)).await.unwrap().replay_of, None);

    // A replayed letter is not set aside (archive moves waiting ones only).
    assert_eq!(dlq::archive(&mut c, &Filter { ids: vec![id], ..Default::default() }).await.unwrap(), 0, "replayed");
    assert!(dlq::show(&mut c, LetterRef::Id(9_999_999)).await.is_err());
}

#[tokio::test]
async fn the_store_tells_which_names_and_ids_exist() {
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    dlq::ingest(&mut c, &letter("production", "rule", "e", 0)).await.unwrap();
    let id = dlq::replay_candidates(&mut c, &Filter::default()).await.unwrap()[0].id;
    assert_eq!(dlq::absent_ids(&mut c, &[id, 999_999, id + 1]).await.unwrap(), vec![999_999, id + 1]);
    assert!(dlq::absent_ids(&mut c, &[]).await.unwrap().is_empty());
    let f = Filter {
        handler: Some("production".into()),
        event_type: Some("order.ready".into()),
        fingerprint: Some("production:rule".into()),
        ..Default::default()
    };
    let s = dlq::stored(&mut c, &f).await.unwrap();
    assert!(s.handler && !s.event_type && s.fingerprint, "{s:?}");
    dlq::archive(&mut c, &Filter::default()).await.unwrap();
    let by = dlq::count_by_status(&mut c, &Filter { handler: Some("production".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by.get("archived"), Some(&1));
    assert_eq!(by.get("dead"), None);
}

//! The store against a real PostgreSQL, each test in its own database: the
//! rules hold at the store level, refused or failed actions change nothing and
//! raise nothing, one production order per sale, and tenancy is airtight.

use atelier_domain::events::{EventType, Origin};
use atelier_domain::rules::production::StepStatus;
use atelier_domain::rules::sale::{self, Channel, SaleStatus};
use atelier_domain::store::production::{Actor, ForSale};
use atelier_domain::store::sales::{NewLine, NewSale, SaleFilter, SaleRequest};
use atelier_domain::store::{
    Db, RuleError, StoreError, Tenant, accounting, outbox, production, products, sales, tenancy,
};
use atelier_domain::testing::{Studio, TestDb, business, studio};

fn origin() -> Origin {
    Origin::new("test")
}

fn sale_of(product_id: i64, quantity: i32, status: SaleStatus) -> NewSale {
    NewSale {
        status,
        channel: Channel::Whatsapp,
        location_id: None,
        customer_id: None,
        notes: None,
        created_by: None,
        lines: vec![NewLine { product_id, quantity, unit_price_minor: None }],
    }
}

async fn events(db: &Db, tenant: Tenant) -> Vec<String> {
    let mut c = db.conn().await.unwrap();
    outbox::for_business(&mut c, tenant.business_id).await.unwrap().into_iter().map(|r| r.event_type).collect()
}

#[tokio::test]
async fn a_final_sale_raises_sale_created_and_a_draft_does_not_until_completed() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let fin =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 2, SaleStatus::Final), &origin()).await.unwrap();
    assert_eq!(fin.sale.total_minor, 5000);
    assert!(fin.sale.invoice_no.starts_with("INV-") && fin.sale.invoice_no.ends_with("-0001"));
    let draft =
        sales::create(&mut c, s.tenant, sale_of(s.shelf_product, 1, SaleStatus::Draft), &origin()).await.unwrap();
    assert!(draft.sale.invoice_no.ends_with("-0002"));
    assert_eq!(events(t.db(), s.tenant).await, ["sale.created"]);

    let done = sales::complete(&mut c, s.tenant, draft.sale.id, &origin()).await.unwrap();
    assert_eq!(done.sale.status, "final");
    assert_eq!(events(t.db(), s.tenant).await, ["sale.created", "sale.created"]);

    // Completing a final sale is a conflict and raises nothing.
    let err = sales::complete(&mut c, s.tenant, draft.sale.id, &origin()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(events(t.db(), s.tenant).await.len(), 2);
}

#[tokio::test]
async fn the_envelope_in_the_outbox_carries_the_sale() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let sale =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Final), &origin()).await.unwrap();
    let rows = outbox::for_business(&mut c, s.tenant.business_id).await.unwrap();
    let env = atelier_domain::events::Envelope::from_json(&rows[0].envelope).unwrap();
    assert_eq!(env.business_id, Some(s.tenant.business_id));
    assert_eq!(env.id, rows[0].event_id);
    match env.event().unwrap() {
        atelier_domain::events::Event::SaleCreated(d) => {
            assert_eq!(d.sale_id, sale.sale.id);
            assert!(d.lines[0].requires_production);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_transaction_leaves_nothing_behind() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let mut bad = sale_of(s.studio_product, 1, SaleStatus::Final);
    bad.lines.push(NewLine { product_id: 999_999, quantity: 1, unit_price_minor: None });
    let err = sales::create(&mut c, s.tenant, bad, &origin()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { field, .. } if field == "lines[1].product_id"), "{err:?}");
    // A failure after the sale row was written (a location of nowhere) rolls back all of it.
    let mut bad = sale_of(s.studio_product, 1, SaleStatus::Final);
    bad.location_id = Some(424_242);
    let err = sales::create(&mut c, s.tenant, bad, &origin()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { field, .. } if field == "location_id"), "{err:?}");
    assert!(events(t.db(), s.tenant).await.is_empty());
    let (rows, total) = sales::list(&mut c, s.tenant, &SaleFilter::default(), 10, 0).await.unwrap();
    assert_eq!((rows.len(), total), (0, 0));
    // The invoice numbers of the failed attempts were not consumed.
    let ok = sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Final), &origin()).await.unwrap();
    assert!(ok.sale.invoice_no.ends_with("-0001"), "{}", ok.sale.invoice_no);
}

#[tokio::test]
async fn invoice_numbers_past_9999_are_numbered_as_the_rule_says_in_the_sale_and_its_event() {
    use diesel_async::RunQueryDsl;
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let sell = || sale_of(s.studio_product, 1, SaleStatus::Final);
    let first = sales::create(&mut c, s.tenant, sell(), &origin()).await.unwrap();
    let period = first.sale.invoice_no[4..10].to_owned();
    assert_eq!(first.sale.invoice_no, sale::invoice_no(&period, 1));
    diesel::sql_query("UPDATE invoice_sequences SET last_no = 9998 WHERE business_id = $1")
        .bind::<diesel::sql_types::BigInt, _>(s.tenant.business_id)
        .execute(&mut c)
        .await
        .unwrap();
    for n in [9999, 10000, 10001] {
        let made = sales::create(&mut c, s.tenant, sell(), &origin()).await.unwrap();
        assert_eq!(made.sale.invoice_no, sale::invoice_no(&period, n));
        // What create returned is what is stored, and the event says the same number.
        let stored = sales::get(&mut c, s.tenant, made.sale.id).await.unwrap();
        assert_eq!(serde_json::to_value(&stored).unwrap(), serde_json::to_value(&made).unwrap());
        let rows = outbox::for_business(&mut c, s.tenant.business_id).await.unwrap();
        let env = atelier_domain::events::Envelope::from_json(&rows.last().unwrap().envelope).unwrap();
        match env.event().unwrap() {
            atelier_domain::events::Event::SaleCreated(d) => {
                assert_eq!((d.sale_id, d.invoice_no.as_str()), (made.sale.id, made.sale.invoice_no.as_str()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The sale `made` is the sale stored, and a final one's event carries its number.
async fn stored_as_made(db: &Db, tenant: Tenant, made: &sales::SaleWithLines) {
    let mut c = db.conn().await.unwrap();
    let stored = sales::get(&mut c, tenant, made.sale.id).await.unwrap();
    assert_eq!(serde_json::to_value(&stored).unwrap(), serde_json::to_value(made).unwrap());
    let raised: Vec<_> = outbox::for_business(&mut c, tenant.business_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match atelier_domain::events::Envelope::from_json(&r.envelope).unwrap().event().unwrap() {
            atelier_domain::events::Event::SaleCreated(d) if d.sale_id == made.sale.id => Some(d.invoice_no),
            _ => None,
        })
        .collect();
    let expected: Vec<String> =
        (made.sale.status == "final").then(|| made.sale.invoice_no.clone()).into_iter().collect();
    assert_eq!(raised, expected, "sale {}", made.sale.invoice_no);
}

fn asked(s: &Studio, new: NewSale) -> SaleRequest {
    SaleRequest { tenant: s.tenant, new, origin: origin() }
}

#[tokio::test]
async fn sales_created_together_are_numbered_per_studio_in_order_and_a_refused_one_takes_no_number() {
    let t = TestDb::new().await;
    let (a, b) = (studio(t.db(), "A").await, studio(t.db(), "B").await);
    let mut c = t.db().conn().await.unwrap();
    let mut two_lines = sale_of(a.studio_product, 2, SaleStatus::Final);
    two_lines.lines.push(NewLine { product_id: a.shelf_product, quantity: 5, unit_price_minor: Some(10) });
    let batch = vec![
        asked(&a, two_lines),
        asked(&b, sale_of(b.shelf_product, 1, SaleStatus::Final)),
        asked(&a, sale_of(a.shelf_product, 1, SaleStatus::Draft)),
        asked(&b, sale_of(b.studio_product, 3, SaleStatus::Final)),
        asked(&a, sale_of(a.studio_product, 1, SaleStatus::Final)),
    ];
    let made: Vec<_> = sales::create_all(&mut c, batch).await.into_iter().map(Result::unwrap).collect();
    let numbers: Vec<_> = made.iter().map(|m| &m.sale.invoice_no[11..]).collect();
    assert_eq!(numbers, ["0001", "0001", "0002", "0002", "0003"]);
    assert_eq!(made[0].sale.total_minor, 2 * 2500 + 5 * 10);
    assert_eq!(made[0].lines.iter().map(|l| (l.line_no, l.quantity)).collect::<Vec<_>>(), [(1, 2), (2, 5)]);
    assert!(made[0].lines[0].id < made[0].lines[1].id);
    for (m, s) in made.iter().zip([&a, &b, &a, &b, &a]) {
        stored_as_made(t.db(), s.tenant, m).await;
    }

    // Refused when read (B's product in A's sale, a customer of nowhere) or
    // when written (a location of nowhere fails the statement; each sale is
    // then written alone): only those sales, and they take no number.
    let mut nowhere = sale_of(a.studio_product, 1, SaleStatus::Final);
    nowhere.location_id = Some(424_242);
    let mut stranger = sale_of(b.shelf_product, 1, SaleStatus::Final);
    stranger.customer_id = Some(424_242);
    let batch = vec![
        asked(&a, sale_of(a.shelf_product, 1, SaleStatus::Final)),
        asked(&a, nowhere),
        asked(&b, sale_of(b.shelf_product, 1, SaleStatus::Final)),
        asked(&a, sale_of(b.shelf_product, 1, SaleStatus::Final)),
        asked(&b, stranger),
        asked(&a, sale_of(a.shelf_product, 2, SaleStatus::Final)),
    ];
    let results = sales::create_all(&mut c, batch).await;
    let refused = |i: usize, name: &str| {
        assert!(matches!(&results[i], Err(StoreError::Invalid { field, .. }) if field == name), "{:?}", results[i]);
    };
    refused(1, "location_id");
    refused(3, "lines[0].product_id");
    refused(4, "customer_id");
    let numbers: Vec<_> = results.iter().flatten().map(|m| &m.sale.invoice_no[11..]).collect();
    assert_eq!(numbers, ["0004", "0003", "0005"]);
    for (m, s) in results.iter().flatten().zip([&a, &b, &a]) {
        stored_as_made(t.db(), s.tenant, m).await;
    }
}

#[tokio::test]
async fn sales_racing_through_the_writer_are_numbered_without_gaps_or_repeats() {
    use atelier_domain::store::sales::writer::{SalesWriter, WriterStats};
    use std::sync::atomic::Ordering::Relaxed;
    let t = TestDb::new().await;
    let studios = [studio(t.db(), "A").await, studio(t.db(), "B").await, studio(t.db(), "C").await];
    let stats = std::sync::Arc::new(WriterStats::default());
    let writer = SalesWriter::start(t.db(), stats.clone()).unwrap();
    let made = futures_util::future::join_all((0..90).map(|i| {
        let s = &studios[i % 3];
        writer.create(asked(s, sale_of(s.shelf_product, 1, SaleStatus::Final)))
    }))
    .await;
    for s in &studios {
        let mut numbers: Vec<String> = made
            .iter()
            .map(|m| m.as_ref().unwrap())
            .filter(|m| m.sale.business_id == s.tenant.business_id)
            .map(|m| m.sale.invoice_no[11..].to_owned())
            .collect();
        numbers.sort();
        assert_eq!(numbers, (1..=30).map(|n| format!("{n:04}")).collect::<Vec<_>>());
    }
    assert_eq!(stats.sales.load(Relaxed), 90);
    // Queued while the writers were busy, most went in together.
    let batches = stats.batches.load(Relaxed);
    assert!(batches < 90, "{batches} batches");
    for (m, i) in made.iter().zip(0..) {
        stored_as_made(t.db(), studios[i % 3].tenant, m.as_ref().unwrap()).await;
    }
}

#[tokio::test]
async fn a_studio_sale_gets_one_order_with_the_default_steps_and_a_normal_sale_none() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let sale =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 3, SaleStatus::Final), &origin()).await.unwrap();
    let ForSale::Created(order) = production::create_for_sale(&mut c, s.tenant, sale.sale.id, &origin()).await.unwrap()
    else {
        panic!("no order")
    };
    assert_eq!(order.order.order_no, format!("PO-{}", &sale.sale.invoice_no[4..]));
    let names: Vec<_> = order.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Dyeing", "Handwork", "Stitching"]);
    assert!(order.steps.iter().all(|s| s.step_qty == Some(3) && s.status == "pending"));
    assert_eq!(order.order.final_price_minor, sale.sale.total_minor);
    // Again: nothing new.
    assert!(matches!(
        production::create_for_sale(&mut c, s.tenant, sale.sale.id, &origin()).await.unwrap(),
        ForSale::AlreadyExists(id) if id == order.order.id
    ));
    assert_eq!(events(t.db(), s.tenant).await, ["sale.created", "production.created"]);

    let normal =
        sales::create(&mut c, s.tenant, sale_of(s.shelf_product, 1, SaleStatus::Final), &origin()).await.unwrap();
    assert!(matches!(
        production::create_for_sale(&mut c, s.tenant, normal.sale.id, &origin()).await.unwrap(),
        ForSale::NotNeeded
    ));
}

#[tokio::test]
async fn a_business_may_configure_its_own_steps() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    production::set_step_names(&mut c, s.tenant, &["Cutting".into(), "Block printing".into()]).await.unwrap();
    let sale =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Final), &origin()).await.unwrap();
    let ForSale::Created(order) = production::create_for_sale(&mut c, s.tenant, sale.sale.id, &origin()).await.unwrap()
    else {
        panic!()
    };
    let names: Vec<_> = order.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Cutting", "Block printing"]);
}

#[tokio::test]
async fn a_draft_sale_gets_no_order() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let draft =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Draft), &origin()).await.unwrap();
    let err = production::create_for_sale(&mut c, s.tenant, draft.sale.id, &origin()).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused(RuleError::Sale(sale::SaleError::Draft { .. }))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_callers_leave_exactly_one_order() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let sale_id = {
        let mut c = t.db().conn().await.unwrap();
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Final), &origin())
            .await
            .unwrap()
            .sale
            .id
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = t.db().clone();
        let tenant = s.tenant;
        tasks.push(tokio::spawn(async move {
            let mut c = db.conn().await.unwrap();
            production::create_for_sale(&mut c, tenant, sale_id, &origin()).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        if let ForSale::Created(_) = task.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    let mut c = t.db().conn().await.unwrap();
    let (orders, total) = production::list(&mut c, s.tenant, &Default::default(), 50, 0).await.unwrap();
    assert_eq!((orders.len(), total), (1, 1));
    assert_eq!(events(t.db(), s.tenant).await.iter().filter(|e| *e == "production.created").count(), 1);
}

async fn order_with_costs(db: &Db, s: &Studio, costs: [i64; 3]) -> production::OrderWithSteps {
    let mut c = db.conn().await.unwrap();
    let sale =
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 2, SaleStatus::Final), &origin()).await.unwrap();
    let ForSale::Created(order) = production::create_for_sale(&mut c, s.tenant, sale.sale.id, &origin()).await.unwrap()
    else {
        panic!()
    };
    for (step, cost) in order.steps.iter().zip(costs) {
        production::set_step_cost(&mut c, s.tenant, step.id, cost, None).await.unwrap();
        production::assign_step(&mut c, s.tenant, step.id, Some(s.worker)).await.unwrap();
    }
    production::get(&mut c, s.tenant, order.order.id).await.unwrap()
}

#[tokio::test]
async fn total_cost_is_the_sum_of_step_costs() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let order = order_with_costs(t.db(), &s, [1000, 0, 250]).await;
    assert_eq!(order.order.total_cost_minor, 1250);
    let mut c = t.db().conn().await.unwrap();
    production::set_step_cost(&mut c, s.tenant, order.steps[1].id, 100, Some("Ravi".into())).await.unwrap();
    assert_eq!(production::get(&mut c, s.tenant, order.order.id).await.unwrap().order.total_cost_minor, 1350);
    let err = production::set_step_cost(&mut c, s.tenant, order.steps[1].id, -1, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }));
}

#[tokio::test]
async fn completing_every_step_completes_the_order_in_the_same_transaction() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let order = order_with_costs(t.db(), &s, [1000, 0, 250]).await;
    let mut c = t.db().conn().await.unwrap();
    let me = Actor { user_id: s.worker, own_steps_only: true };
    let before = events(t.db(), s.tenant).await.len();
    for (i, step) in order.steps.iter().enumerate() {
        let st = production::record_progress(&mut c, s.tenant, step.id, me, 1, &origin()).await.unwrap();
        assert_eq!(st.status, "in_progress");
        assert!(st.started_at.is_some());
        let st = production::record_progress(&mut c, s.tenant, step.id, me, 2, &origin()).await.unwrap();
        assert_eq!(st.status, "completed");
        let o = production::get(&mut c, s.tenant, order.order.id).await.unwrap().order;
        let expected = if i == 2 { "completed" } else { "in_progress" };
        assert_eq!(o.status, expected);
    }
    let raised = events(t.db(), s.tenant).await.split_off(before);
    assert_eq!(
        raised,
        [
            "production.step.completed",
            "production.step.completed",
            "production.step.completed",
            "production.completed",
            "order.ready"
        ]
    );
}

#[tokio::test]
async fn refused_step_changes_change_nothing_and_raise_nothing() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let order = order_with_costs(t.db(), &s, [0, 0, 0]).await;
    let step = &order.steps[0];
    let mut c = t.db().conn().await.unwrap();
    let me = Actor { user_id: s.worker, own_steps_only: true };
    let before = events(t.db(), s.tenant).await;

    // Skipping pending → completed.
    let e = production::set_status(&mut c, s.tenant, step.id, me, StepStatus::Completed, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Refused(RuleError::Step(_))), "{e:?}");
    // More than step_qty.
    let e = production::record_progress(&mut c, s.tenant, step.id, me, 3, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Refused(RuleError::Step(_))), "{e:?}");
    // in_progress → completed before every unit is done.
    production::set_status(&mut c, s.tenant, step.id, me, StepStatus::InProgress, &origin()).await.unwrap();
    let e = production::set_status(&mut c, s.tenant, step.id, me, StepStatus::Completed, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e:?}");
    // Going back.
    let e = production::set_status(&mut c, s.tenant, step.id, me, StepStatus::Pending, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e:?}");

    let now = production::step(&mut c, s.tenant, step.id, None).await.unwrap();
    assert_eq!((now.status.as_str(), now.completed_qty), ("in_progress", 0));
    assert_eq!(events(t.db(), s.tenant).await, before);
}

#[tokio::test]
async fn a_worker_touches_only_its_own_steps() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let order = order_with_costs(t.db(), &s, [0, 0, 0]).await;
    let mut c = t.db().conn().await.unwrap();
    let other = Actor { user_id: s.other_worker, own_steps_only: true };
    let e = production::record_progress(&mut c, s.tenant, order.steps[0].id, other, 1, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    assert!(production::steps_assigned_to(&mut c, s.tenant, s.other_worker, true).await.unwrap().is_empty());
    assert_eq!(production::steps_assigned_to(&mut c, s.tenant, s.worker, false).await.unwrap().len(), 3);
    // Completed steps are hidden unless asked for.
    let me = Actor { user_id: s.worker, own_steps_only: true };
    production::record_progress(&mut c, s.tenant, order.steps[0].id, me, 2, &origin()).await.unwrap();
    assert_eq!(production::steps_assigned_to(&mut c, s.tenant, s.worker, false).await.unwrap().len(), 2);
    assert_eq!(production::steps_assigned_to(&mut c, s.tenant, s.worker, true).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_step_expense_is_booked_once_and_moves_the_balance() {
    use atelier_domain::rules::costing::step_expense;
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let expense = step_expense(41, "Dyeing", "PO-1", 1200).unwrap();
    let first = accounting::book_step_expense_in(&mut c, s.tenant, &expense).await.unwrap();
    let second = accounting::book_step_expense_in(&mut c, s.tenant, &expense).await.unwrap();
    assert!(first.is_some() && second.is_none());
    let accounts = accounting::list_accounts(&mut c, s.tenant).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].balance_minor, -1200);
    let (txs, n) = accounting::list_transactions(&mut c, s.tenant, &Default::default(), 10, 0).await.unwrap();
    assert_eq!((n, txs[0].category.as_str(), txs[0].direction.as_str()), (1, "Production Cost", "debit"));
}

#[tokio::test]
async fn a_payment_raises_payment_received_only_on_a_final_sale() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let draft =
        sales::create(&mut c, s.tenant, sale_of(s.shelf_product, 1, SaleStatus::Draft), &origin()).await.unwrap();
    let e = sales::record_payment(&mut c, s.tenant, draft.sale.id, 100, "cash", None, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)));
    let e = sales::record_payment(&mut c, s.tenant, draft.sale.id, 0, "cash", None, &origin()).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }));
    sales::complete(&mut c, s.tenant, draft.sale.id, &origin()).await.unwrap();
    sales::record_payment(&mut c, s.tenant, draft.sale.id, 2500, "upi", None, &origin()).await.unwrap();
    let evs = events(t.db(), s.tenant).await;
    assert_eq!(evs, ["sale.created", EventType::PaymentReceived.as_str()]);
}

#[tokio::test]
async fn another_business_ids_are_not_found_everywhere() {
    let t = TestDb::new().await;
    let a = studio(t.db(), "A").await;
    let b = studio(t.db(), "B").await;
    let db = t.db();
    let mut c = db.conn().await.unwrap();
    let b_sale =
        sales::create(&mut c, b.tenant, sale_of(b.studio_product, 1, SaleStatus::Draft), &origin()).await.unwrap();
    let b_order = order_with_costs(db, &b, [0, 0, 0]).await;
    let b_step = b_order.steps[0].id;
    let a_admin = Actor { user_id: a.worker, own_steps_only: false };
    let nf = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    };
    let o = origin();
    let t_ = a.tenant;
    nf(sales::get(&mut c, t_, b_sale.sale.id).await.map(|_| ()), "sales::get");
    nf(sales::complete(&mut c, t_, b_sale.sale.id, &o).await.map(|_| ()), "sales::complete");
    nf(sales::update_draft(&mut c, t_, b_sale.sale.id, None, Some(None)).await.map(|_| ()), "sales::update_draft");
    nf(sales::record_payment(&mut c, t_, b_sale.sale.id, 1, "cash", None, &o).await.map(|_| ()), "record_payment");
    nf(products::get(&mut c, t_, b.studio_product).await.map(|_| ()), "products::get");
    nf(products::update(&mut c, t_, b.studio_product, Default::default()).await.map(|_| ()), "products::update");
    nf(
        products::update(
            &mut c,
            t_,
            b.studio_product,
            products::ProductChanges { active: Some(false), ..Default::default() },
        )
        .await
        .map(|_| ()),
        "products::update with changes",
    );
    nf(production::get(&mut c, t_, b_order.order.id).await.map(|_| ()), "production::get");
    nf(production::create_for_sale(&mut c, t_, b_sale.sale.id, &o).await.map(|_| ()), "create_for_sale");
    nf(production::step(&mut c, t_, b_step, None).await.map(|_| ()), "production::step");
    nf(production::record_progress(&mut c, t_, b_step, a_admin, 1, &o).await.map(|_| ()), "record_progress");
    nf(production::set_status(&mut c, t_, b_step, a_admin, StepStatus::InProgress, &o).await.map(|_| ()), "set_status");
    nf(production::plan_step(&mut c, t_, b_step, 5).await.map(|_| ()), "plan_step");
    nf(production::set_step_cost(&mut c, t_, b_step, 5, None).await.map(|_| ()), "set_step_cost");
    nf(production::assign_step(&mut c, t_, b_step, None).await.map(|_| ()), "assign_step");
    nf(tenancy::user(&mut c, t_, b.worker).await.map(|_| ()), "tenancy::user");
    nf(tenancy::set_user_active(&mut c, t_, b.worker, false).await.map(|_| ()), "set_user_active");
    // Referencing B's records from A's writes is refused as if they did not exist.
    let e = sales::create(&mut c, t_, sale_of(b.studio_product, 1, SaleStatus::Final), &o).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }), "{e:?}");
    let a_order = order_with_costs(db, &a, [0, 0, 0]).await;
    let e = production::assign_step(&mut c, t_, a_order.steps[0].id, Some(b.worker)).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }), "{e:?}");
    // Lists never count another business's rows.
    let (_, n) = sales::list(&mut c, t_, &SaleFilter::default(), 100, 0).await.unwrap();
    let (_, nb) = sales::list(&mut c, b.tenant, &SaleFilter::default(), 100, 0).await.unwrap();
    assert_eq!((n, nb), (1, 2));
    assert_eq!(production::steps_assigned_to(&mut c, t_, b.worker, true).await.unwrap().len(), 0);
    let (_, np) = products::list(&mut c, t_, 100, 0).await.unwrap();
    assert_eq!(np, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_event_applies_once_even_when_raced() {
    use atelier_domain::store::processing::{claim, is_processed};
    use diesel_async::AsyncConnection;
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let sale_id = {
        let mut c = t.db().conn().await.unwrap();
        sales::create(&mut c, s.tenant, sale_of(s.studio_product, 1, SaleStatus::Final), &origin())
            .await
            .unwrap()
            .sale
            .id
    };
    let event_id = uuid::Uuid::now_v7();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let db = t.db().clone();
        let tenant = s.tenant;
        tasks.push(tokio::spawn(async move {
            let mut c = db.conn().await.unwrap();
            c.transaction(async |c| {
                if !claim(c, "production", event_id).await? {
                    return Ok::<_, StoreError>(false);
                }
                production::create_for_sale_in(c, tenant, sale_id, &origin()).await?;
                Ok(true)
            })
            .await
            .unwrap()
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += usize::from(t.await.unwrap());
    }
    assert_eq!(applied, 1);
    // A failing effect rolls the claim back: the event can be processed later.
    let mut c = t.db().conn().await.unwrap();
    let other = uuid::Uuid::now_v7();
    let failed: Result<(), StoreError> = c
        .transaction(async |c| {
            claim(c, "accounting", other).await?;
            Err(StoreError::Conflict("boom".into()))
        })
        .await;
    assert!(failed.is_err());
    assert!(!is_processed(&mut c, "accounting", other).await.unwrap());
}

#[tokio::test]
async fn a_chat_draft_has_no_lines_and_cannot_be_completed_until_it_has() {
    use atelier_domain::store::inbound;
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let (customer, _) = inbound::find_or_create_customer(&mut c, s.tenant, "+919800000001").await.unwrap();
    let draft = sales::create_chat_draft_in(&mut c, s.tenant, customer, Channel::Whatsapp, "yes").await.unwrap();
    assert_eq!((draft.status.as_str(), draft.total_minor, draft.customer_id), ("draft", 0, Some(customer)));
    let err = sales::complete(&mut c, s.tenant, draft.id, &origin()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Refused(RuleError::Sale(atelier_domain::rules::sale::SaleError::NoLines))),
        "{err:?}"
    );
    assert!(events(t.db(), s.tenant).await.is_empty(), "nothing raised");
    // Once staff add what was agreed, it completes like any draft.
    let lines = vec![NewLine { product_id: s.studio_product, quantity: 1, unit_price_minor: None }];
    sales::update_draft(&mut c, s.tenant, draft.id, Some(lines), None).await.unwrap();
    let done = sales::complete(&mut c, s.tenant, draft.id, &origin()).await.unwrap();
    assert_eq!((done.sale.status.as_str(), done.sale.total_minor), ("final", 2500));
    // Another business's customer cannot be linked.
    let other = business(t.db(), "B").await;
    let err = sales::create_chat_draft_in(&mut c, other, customer, Channel::Whatsapp, "yes").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn a_notification_is_begun_once_per_event_reference_and_phone() {
    use atelier_domain::store::notifications::{self, Begun, NewNotification};
    use std::time::Duration;
    let t = TestDb::new().await;
    let s = studio(t.db(), "A").await;
    let mut c = t.db().conn().await.unwrap();
    let new = NewNotification {
        event_type: "order.ready",
        reference: "production_order:1",
        phone: "+919800000001",
        customer_id: None,
        channel_id: None,
        channel_type: "log",
        body: "ready",
    };
    let lease = Duration::from_secs(60);
    let Begun::Send(m) = notifications::begin_send(&mut c, s.tenant, &new, lease).await.unwrap() else { panic!() };
    assert!(matches!(notifications::begin_send(&mut c, s.tenant, &new, lease).await.unwrap(), Begun::InFlight(_)));
    notifications::mark_sent_in(&mut c, s.tenant, m.id, Some("wamid.1")).await.unwrap();
    assert!(matches!(notifications::begin_send(&mut c, s.tenant, &new, lease).await.unwrap(), Begun::AlreadySent(_)));
    // Status reports only move it forward.
    use atelier_domain::rules::notifications::MessageStatus;
    assert!(notifications::record_status_report(&mut c, s.tenant, "wamid.1", MessageStatus::Read).await.unwrap());
    assert!(!notifications::record_status_report(&mut c, s.tenant, "wamid.1", MessageStatus::Delivered).await.unwrap());
    let other = business(t.db(), "B").await;
    assert!(!notifications::record_status_report(&mut c, other, "wamid.1", MessageStatus::Failed).await.unwrap());
    let all = notifications::outbound_for(&mut c, s.tenant, "order.ready", "production_order:1").await.unwrap();
    assert_eq!((all.len(), all[0].status.as_str(), all[0].attempts), (1, "read", 1));
}

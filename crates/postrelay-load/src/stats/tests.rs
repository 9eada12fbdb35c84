use super::*;

#[test]
fn percentiles_take_the_nearest_rank() {
    let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    let p = percentiles(&mut v).unwrap();
    assert_eq!(
        (p.n, p.p50, p.p90, p.p99, p.max),
        (100, 50.0, 90.0, 99.0, 100.0)
    );
    assert_eq!(p.mean, 50.5);
    let p = percentiles(&mut [7.0]).unwrap();
    assert_eq!((p.p50, p.p99, p.max), (7.0, 7.0, 7.0));
    assert!(percentiles(&mut []).is_none());
}

#[test]
fn arrival_lines_parse_and_bad_ones_are_refused() {
    assert_eq!(
        parse_arrival("t1.5 10 1700000000000000000"),
        Some(Arrival {
            id: "t1.5",
            rcpts: 10,
            at_ns: 1_700_000_000_000_000_000
        })
    );
    for bad in ["", "t1.5", "t1.5 x 1", "t1.5 1", "t1.5 1 2 3", " 1 2"] {
        assert_eq!(parse_arrival(bad), None, "{bad:?}");
    }
}

#[test]
fn a_message_arrives_when_all_its_recipients_have() {
    let mut a = Arrivals::new("run", &[true, true, false], 10);
    assert_eq!(a.pending(), 2);
    // Split over two transactions, a line cut in the middle, another run's
    // message, an unexpected one and garbage.
    a.feed("run.0 4 100\nother.1 10 5\nrun.2 10 7\nrun.1 10 2");
    assert_eq!(a.pending(), 2, "run.1's line is not complete yet");
    a.feed("00\nnonsense\nrun.0 6 300\nrun.0 10 900\n");
    assert_eq!(a.pending(), 0);
    assert_eq!(a.done_at(), &[Some(300), Some(200), None]);
    assert_eq!(a.malformed, 1);
}

#[test]
fn delays_pair_acceptance_with_arrival() {
    let d = delays_ms(
        &[Some(1_000_000), Some(5_000_000), None, Some(2_000_000)],
        &[Some(3_500_000), None, Some(9), Some(1_750_000)],
    );
    assert_eq!(d, vec![2.5, -0.25], "the sink may be quicker than the 250");
}

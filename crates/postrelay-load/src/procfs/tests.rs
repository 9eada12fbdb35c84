use super::*;

#[test]
fn rollup_and_status_fields_are_read_in_kb() {
    let rollup = "55d0-7ff r--p 0 00:00 0 [rollup]\nRss:  4200 kB\nPss:  3100 kB\nPss_Anon: 9 kB\n";
    assert_eq!(parse_rollup(rollup), (4200, 3100));
    assert_eq!(parse_rollup("nothing here"), (0, 0));
    let status = "Name:\tpostrelay\nVmPeak:\t 9999 kB\nVmHWM:\t   8123 kB\nVmRSS:\t 100 kB\n";
    assert_eq!(field_kb(status, "VmHWM:"), Some(8123));
    assert_eq!(field_kb(status, "VmSwap:"), None);
}

#[test]
fn cgroup_procs_list_pids() {
    assert_eq!(parse_pids("12\n345\n\n"), vec![12, 345]);
    assert_eq!(parse_pids(""), Vec::<u32>::new());
}

#[test]
fn watching_this_process_sees_its_memory_until_the_stop_file() {
    let dir = tempfile::tempdir().unwrap();
    let until = dir.path().join("stop");
    std::fs::write(&until, "").unwrap();
    let r = watch(&WatchArgs {
        pid: vec![std::process::id()],
        cgroup: None,
        period_ms: 1,
        until,
        reset_peak: false,
    })
    .unwrap();
    assert_eq!(r.samples, 1);
    assert!(
        r.peak_rss_kb > 0 && r.peak_pss_kb > 0 && r.max_hwm_kb > 0,
        "{r:?}"
    );
}

#[test]
fn a_process_both_named_and_in_the_cgroup_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cgroup.procs"), "7\n3\n").unwrap();
    let args = WatchArgs {
        pid: vec![3],
        cgroup: Some(dir.path().to_owned()),
        period_ms: 1,
        until: dir.path().join("stop"),
        reset_peak: false,
    };
    assert_eq!(pids(&args), vec![3, 7]);
}

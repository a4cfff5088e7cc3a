//! Churn: many up/down cycles leave nothing behind. Its own test binary, so that the
//! descriptor count of this process is not disturbed by other tests running alongside.

mod common;

use common::*;
use std::time::Duration;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn two_hundred_up_down_cycles_leak_nothing() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let fds_before = open_fds();
    for i in 0..200 {
        let out = sb.run(sb.wg_wrap(&["up", "work"]));
        assert!(out.status.success(), "up #{i}\n{}", describe(&out));
        let out = sb.run(sb.wg_wrap(&["down", "work"]));
        assert!(out.status.success(), "down #{i}\n{}", describe(&out));
    }
    let left = sb.wait_no_processes(Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(
        !sb.profile_runtime_dir("work").exists(),
        "runtime files left behind"
    );
    assert_eq!(
        open_fds(),
        fds_before,
        "file descriptors leaked in the test process"
    );
}

//! Every import of every filter we build is provided by the harness, and calls
//! it does not support fail loudly.

// Test code: a failed expectation is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_harness::{fixture_path, module_imports, wasm_path, Harness};

const FILTERS: [&str; 5] = ["pii-mask", "prompt-template", "semantic-cache", "token-counter", "model-router"];

/// The host functions the harness implements (everything else traps with its name).
const PROVIDED: &[&str] = &[
    "env::proxy_log",
    "env::proxy_get_log_level",
    "env::proxy_get_current_time_nanoseconds",
    "env::proxy_set_tick_period_milliseconds",
    "env::proxy_get_buffer_bytes",
    "env::proxy_set_buffer_bytes",
    "env::proxy_get_header_map_pairs",
    "env::proxy_set_header_map_pairs",
    "env::proxy_get_header_map_value",
    "env::proxy_replace_header_map_value",
    "env::proxy_add_header_map_value",
    "env::proxy_remove_header_map_value",
    "env::proxy_get_property",
    "env::proxy_set_property",
    "env::proxy_get_shared_data",
    "env::proxy_set_shared_data",
    "env::proxy_register_shared_queue",
    "env::proxy_resolve_shared_queue",
    "env::proxy_dequeue_shared_queue",
    "env::proxy_enqueue_shared_queue",
    "env::proxy_continue_stream",
    "env::proxy_close_stream",
    "env::proxy_send_local_response",
    "env::proxy_http_call",
    "env::proxy_grpc_call",
    "env::proxy_grpc_stream",
    "env::proxy_grpc_send",
    "env::proxy_grpc_cancel",
    "env::proxy_grpc_close",
    "env::proxy_get_status",
    "env::proxy_set_effective_context",
    "env::proxy_done",
    "env::proxy_call_foreign_function",
    "env::proxy_define_metric",
    "env::proxy_increment_metric",
    "env::proxy_record_metric",
    "env::proxy_get_metric",
    "wasi_snapshot_preview1::environ_get",
    "wasi_snapshot_preview1::environ_sizes_get",
    "wasi_snapshot_preview1::args_get",
    "wasi_snapshot_preview1::args_sizes_get",
    "wasi_snapshot_preview1::fd_write",
    "wasi_snapshot_preview1::proc_exit",
    "wasi_snapshot_preview1::clock_time_get",
    "wasi_snapshot_preview1::clock_res_get",
    "wasi_snapshot_preview1::random_get",
    "wasi_snapshot_preview1::sched_yield",
    "wasi_snapshot_preview1::fd_prestat_get",
    "wasi_snapshot_preview1::fd_prestat_dir_name",
    "wasi_snapshot_preview1::fd_close",
    "wasi_snapshot_preview1::fd_read",
    "wasi_snapshot_preview1::fd_seek",
    "wasi_snapshot_preview1::fd_fdstat_get",
    "wasi_snapshot_preview1::poll_oneoff",
];

#[test]
fn every_import_of_our_filters_is_implemented() {
    let mut paths: Vec<_> = FILTERS.iter().map(|f| wasm_path(f)).collect();
    paths.push(fixture_path());
    for path in paths {
        let missing: Vec<String> =
            module_imports(&path).into_iter().filter(|import| !PROVIDED.contains(&import.as_str())).collect();
        assert!(missing.is_empty(), "{} imports host calls the harness lacks: {missing:?}", path.display());
    }
}

#[test]
fn every_filter_starts_and_rejects_an_unknown_config_field() {
    let harness = Harness::new();
    for filter in FILTERS {
        let vm = harness.vm(wasm_path(filter)).config(r#"{"nope":1}"#).vm_id(filter).start();
        assert!(vm.started(), "{filter}: on_vm_start failed: {:?}", vm.logs());
        assert!(!vm.configured(), "{filter}: accepted an unknown field");
        assert!(
            vm.logs_contain(&format!("{filter}: invalid configuration")),
            "{filter}: no config error logged: {:?}",
            vm.logs()
        );
    }
}

#[test]
#[ignore = "prints the imports; run with --ignored --nocapture"]
fn print_imports() {
    for filter in FILTERS {
        println!("{filter}: {:?}", module_imports(wasm_path(filter)));
    }
    println!("fixture: {:?}", module_imports(fixture_path()));
}

//! Host keys such as `web[01:20].example.org:2222`: expanded or refused,
//! within the limit of hosts per pattern, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((hosts, _port)) = pipeline::inventory::expand_host_key(key) {
        assert!(hosts.len() <= pipeline::limits::MAX_HOSTS_PER_PATTERN);
    }
});

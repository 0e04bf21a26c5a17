//! The Ansible inventory loader: any bytes give an inventory or an error
//! with a location, never a panic; a loaded one lists and resolves.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::inventory::Inventory;

fuzz_target!(|data: &[u8]| {
    let Some(text) = pipeline_fuzz::text_of(data) else {
        return;
    };
    match Inventory::parse(&text, Path::new("inventory.yaml")) {
        Ok(inventory) => {
            let _ = inventory.to_ansible_list();
            for group in inventory.group_names() {
                let _ = inventory.resolve(group);
            }
            for host in inventory.host_names() {
                let _ = inventory.host_vars(host);
                let _ = inventory.host_location(host);
            }
        }
        Err(error) => {
            let _ = (error.message(), error.location());
        }
    }
});

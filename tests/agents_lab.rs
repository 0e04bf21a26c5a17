//! Each lab host runs an agent built for its own platform, as a board would:
//! lab-arm64 and lab-riscv64 run the aarch64 and riscv64 agents (built by
//! scripts/build-agents) under qemu with their boards' CPU models, and the
//! file uploaded to each host has its architecture's ELF machine. Their wasm
//! modules run for their architecture too (`scripts/build-shims --runner`).

#[path = "common/lab.rs"]
mod lab;

use std::path::Path;
use std::sync::Arc;

use pipeline::agent::wire::{AgentCall, AgentRequest, AgentResponse};
use pipeline::backend::host::{AgentBinaries, HostConnector, HostSession, SshConnector};
use pipeline::inventory::{HostSettings, Inventory};
use tokio_util::sync::CancellationToken;

/// The ELF header's machine: 0x3e x86-64, 0xb7 AArch64, 0xf3 RISC-V.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert!(
        bytes.starts_with(b"\x7fELF"),
        "{} is no ELF file",
        path.display()
    );
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_lab_host_runs_an_agent_of_its_own_architecture() {
    let state = lab::lab();
    let agents_dir = lab::repository().join("target/agents");
    for arch in ["aarch64", "riscv64"] {
        assert!(
            agents_dir.join(arch).join("pipeline").is_file(),
            "no {arch} agent in {}: scripts/test builds it with scripts/build-agents",
            agents_dir.display()
        );
    }
    let inventory_path = lab::repository().join(".lab/inventory.yaml");
    let inventory = Inventory::load(&inventory_path).expect("the lab's inventory");
    let control = tempfile::tempdir().expect("temporary folder");
    let connector = SshConnector {
        inventory_dir: lab::repository().join(".lab"),
        control_dir: control.path().to_path_buf(),
        agents: AgentBinaries::find(Path::new(env!("CARGO_BIN_EXE_pipeline")), Some(&agents_dir)),
    };
    let cancel = CancellationToken::new();
    let expected = [
        ("lab-amd64", "x86_64-unknown-linux-", 0x3e, None),
        (
            "lab-arm64",
            "aarch64-unknown-linux-musl",
            0xb7,
            Some("cortex-a57"),
        ),
        (
            "lab-riscv64",
            "riscv64gc-unknown-linux-",
            0xf3,
            Some("sifive-u54"),
        ),
    ];
    for (host, target, machine, cpu) in expected {
        let vars = inventory.host_vars(host).expect("a lab host");
        let settings = HostSettings::from_vars(host, vars).expect("host settings");
        let session: Arc<dyn HostSession> = connector.connect(&settings).await.expect("connect");
        let request = AgentRequest::Facts {
            engines: Vec::new(),
            qemu_cpu: settings.qemu_cpu.clone(),
        };
        let facts = match session.call(&AgentCall::new(request), &cancel).await {
            Ok(AgentResponse::Facts(facts)) => facts,
            other => panic!("{host}: facts expected, got {other:?}"),
        };
        assert!(
            facts.agent_target.starts_with(target),
            "{host} ran {}",
            facts.agent_target
        );
        // Its wasm modules are compiled and run for the host's architecture
        // too: on an emulated host by the runner beside the shim, under qemu.
        let arch = target.split('-').next().unwrap().trim_end_matches("gc");
        assert_eq!(facts.wasm_machine.as_deref(), Some(arch), "{host}");
        assert_eq!(
            facts.shim_machines,
            ["containerd-shim-wasmtime-v1 x86_64"],
            "{host}: the shim itself is the runner's"
        );
        assert_eq!(facts.emulated, cpu.is_some(), "{host}");
        assert_eq!(facts.emulated_cpu.as_deref(), cpu, "{host}");

        // The agent the runner uploaded, seen through the host's own filesystem.
        let anchor = state
            .hosts
            .iter()
            .find(|entry| entry.host.name == host)
            .expect("a lab host")
            .anchor
            .pid;
        let tmp = Path::new("/proc").join(anchor.to_string()).join("root/tmp");
        let uploaded: Vec<_> = std::fs::read_dir(&tmp)
            .expect("the host's /tmp")
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name().is_some_and(|name| {
                    name.to_string_lossy()
                        .starts_with(&format!("pipeline-agent-{arch}-"))
                })
            })
            .collect();
        assert!(
            !uploaded.is_empty(),
            "{host}: no agent for {arch} in {}",
            tmp.display()
        );
        for path in uploaded {
            assert_eq!(elf_machine(&path), machine, "{}", path.display());
        }
    }
}

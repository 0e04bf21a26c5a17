//! Ansible YAML inventories (`inventory.yaml`), read and resolved the way
//! `ansible-inventory -i FILE --list` does (checked against ansible-core 2.19).
//!
//! Loading goes parse → model → resolve once:
//! - `yaml` reads the file with Ansible's loader semantics (JSON first, then
//!   YAML 1.1 typing as `PyYAML` does it, `!unsafe`/`!vault` tags), keeping
//!   line/column on every node;
//! - `model` walks it like Ansible's `yaml` inventory plugin, building groups,
//!   hosts and their vars with `InventoryData`'s rules (implicit `all` and
//!   `ungrouped`, group depth and priority, host ranges from `pattern`);
//! - [`Inventory`] then resolves every host's vars in Ansible's precedence
//!   order, including `group_vars/` and `host_vars/` (`vars_files`).
//!
//! # Ansible behaviour reproduced (observed with `ansible-inventory`)
//!
//! - A file is rejected when Ansible's yaml plugin rejects it: a top level
//!   that is not a mapping, a `plugin:` key, `hosts`/`vars`/`children` that
//!   are neither a mapping, null nor a string (a string is one name), host vars
//!   that are not a mapping (empty values count as none), non-string host
//!   patterns or group names, bad ranges, group loops, a `children:` entry
//!   naming nothing known, a non-integer `ansible_group_priority`, YAML errors,
//!   unknown tags, more than one document. Unknown group keys, group
//!   definitions that are not mappings and duplicate keys are only warnings
//!   (see [`Inventory::warnings`]); a duplicate key keeps its first position and
//!   its last value, so a group defined twice in one mapping loses the first
//!   definition.
//! - `--list`: every group with hosts or children (empty lists left out);
//!   `hosts` are direct members, `children` direct subgroups, both in insertion
//!   order; `all` shows only `children` (`ungrouped` first, then groups in the
//!   order they became children of `all`: as written under `all`, then the
//!   top-level groups without a parent); no group vars; `_meta.hostvars` holds
//!   each host's resolved vars, without hosts that have none and without
//!   Ansible's internal/magic vars (`inventory_hostname`, `group_names`, ...);
//!   `_meta.profile` is `inventory_legacy`.
//! - `ungrouped` gets the hosts that are in no group but `all`; hosts listed
//!   under `ungrouped` that are also in another group leave it.
//! - Variable order, lowest first: `all` vars from the inventory, the host's
//!   other groups from the inventory, `group_vars/all`, `group_vars/<group>`,
//!   the host's inventory vars, `host_vars/<host>`. Groups are sorted by depth
//!   (longest path from `all`), `ansible_group_priority`, then name; later
//!   values replace whole top-level keys. So `group_vars/all` overrides vars
//!   the inventory gives to any group. Host vars given twice: the last wins.
//!   Vars given to a host that has a group's name go to the group.
//! - `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`: only the first that exists
//!   is read; a directory gives all its `.yml`/`.yaml`/`.json`/extension-less
//!   files, sorted, recursively. Vars files are only read for hosts and for
//!   groups that have hosts, so a broken file for an empty group is ignored.
//! - Host keys: `name:port` splits only when `name` is a valid host name or
//!   address (`[ipv6]:port` too); the port applies when the host is created
//!   (and `:0` is ignored). Ranges follow `expand_hostname_range`: letters
//!   index into `a..zA..Z`, zero-padded bounds must have equal width, an empty
//!   begin is 0, a backwards numeric range yields nothing.
//! - YAML 1.1 plain scalars: `yes/no/on/off` (three casings) are booleans,
//!   `y`/`n` strings; `0755` octal, `0x`, `0b`, `1_000`, `1:30` (base 60)
//!   integers; `0o17`, `1e3`, `1.0e3` strings (an exponent needs a dot and a
//!   sign); `.5`, `1.`, `.inf`, `.nan` floats; `~`, `null`, `Null`, `NULL` and
//!   empty are null; dates and timestamps become Python `isoformat()` strings;
//!   `=` as a value and `!!binary` are errors; `<<` merges (earlier sources
//!   win). Quoted scalars stay strings. A file valid as JSON uses JSON rules.
//!   `!unsafe` values (re-typed as if plain) and `!vault` values appear as
//!   `{"__ansible_unsafe": ...}` / `{"__ansible_vault": ...}` like in `--list`.
//!
//! # Not reproduced
//!
//! - Files Ansible reads with another plugin after the yaml plugin fails:
//!   a file with no YAML document is an empty inventory here too, but e.g.
//!   `{}` (which Ansible's ini plugin reads as a host named `{}`) is rejected.
//!   Directory inventories and INI files are out of scope.
//! - Non-finite floats become the strings `"Infinity"`, `"-Infinity"`,
//!   `"NaN"` (JSON has no such numbers; Python prints them bare); integers
//!   beyond 64 bits become floats.
//! - `!!set` keeps source order (Python's set order is arbitrary).
//! - Hosts of groups two or more levels below the resolved group come in
//!   breadth-first order; Ansible's order there depends on Python set
//!   iteration and is not stable.
//! - The implicit `localhost` is not created; `resolve` takes a group or host
//!   name, not Ansible's pattern language.
//! - Nesting deeper than 255 levels is rejected (granit-parser's limit), and
//!   so are aliases expanding to more than a million nodes or 64 MiB of text
//!   (Ansible expands a "billion laughs" file until memory runs out), host
//!   patterns expanding to more than 10,000 hosts, files over 16 MiB and files
//!   that are not regular files (see `crate::limits`).

mod error;
mod host;
mod model;
mod pattern;
mod python;
mod vars_files;
mod yaml;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use error::{InventoryError, InventoryWarning};
pub use host::{
    Connection, DEFAULT_CONTAINERD_SOCKET, DEFAULT_DOCKER_SOCKET, HostKeyChecking, HostSettings,
};

use model::{ALL, Builder, Graph};
use vars_files::{Entity, VarsFiles};

/// `ansible-inventory --list` leaves these out of `_meta.hostvars` (Ansible's
/// `INTERNAL_STATIC_VARS`); the magic per-host vars are among them.
const INTERNAL_VARS: &[&str] = &[
    "ansible_async_path",
    "ansible_collection_name",
    "ansible_config_file",
    "ansible_dependent_role_names",
    "ansible_diff_mode",
    "ansible_facts",
    "ansible_forks",
    "ansible_inventory_sources",
    "ansible_limit",
    "ansible_play_batch",
    "ansible_play_hosts",
    "ansible_play_hosts_all",
    "ansible_play_role_names",
    "ansible_playbook_python",
    "ansible_role_name",
    "ansible_role_names",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_verbosity",
    "ansible_version",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
    "playbook_dir",
    "play_hosts",
    "role_name",
    "role_names",
    "role_path",
    "role_uuid",
];

/// The JSON serialisation profile name ansible-core 2.19 reports in `_meta`.
const LIST_PROFILE: &str = "inventory_legacy";

/// Expands one key of a `hosts:` mapping, such as `web[01:20].example.org:2222`,
/// into host names and its port, as loading an inventory does.
pub fn expand_host_key(key: &str) -> Result<(Vec<String>, Option<u64>), String> {
    let split = pattern::split_port(key);
    Ok((pattern::expand_ranges(&split.pattern)?, split.port))
}

/// A loaded inventory with every host's variables resolved.
#[derive(Debug)]
pub struct Inventory {
    path: PathBuf,
    graph: Graph,
    /// Resolved vars per host, indexed like `graph.hosts`.
    host_vars: Vec<Map<String, Value>>,
    warnings: Vec<InventoryWarning>,
}

impl Inventory {
    /// Reads an inventory file and the `group_vars/` and `host_vars/`
    /// directories beside it.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let source = crate::limits::read_regular_file(path)
            .map_err(|source| InventoryError::read(path, source))?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files = VarsFiles::new(&directory);
        Inventory::build(&source, path, Some(&mut files))
    }

    /// Parses inventory text; `path` is used for messages only and no
    /// `group_vars/`/`host_vars/` are read.
    pub fn parse(source: &str, path: &Path) -> Result<Inventory, InventoryError> {
        Inventory::build(source, path, None)
    }

    fn build(
        source: &str,
        path: &Path,
        mut files: Option<&mut VarsFiles>,
    ) -> Result<Inventory, InventoryError> {
        let document = yaml::load(source, path)?;
        let mut builder = Builder::new(path);
        builder.warnings.extend(document.warnings);
        builder.read_document(document.root)?;
        builder.reconcile()?;
        let Builder {
            graph,
            mut warnings,
            ..
        } = builder;

        // Ansible only asks the vars plugin about hosts it lists and their groups.
        let mut host_vars = vec![Map::new(); graph.hosts.len()];
        for host in graph.group_hosts(ALL) {
            host_vars[host] = resolve_host_vars(&graph, host, files.as_deref_mut())?;
        }
        if let Some(files) = files {
            warnings.append(&mut files.warnings);
        }
        Ok(Inventory {
            path: path.to_path_buf(),
            graph,
            host_vars,
            warnings,
        })
    }

    /// The file the inventory was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every host, in the order `ansible all --list-hosts` prints them.
    pub fn host_names(&self) -> Vec<&str> {
        self.names_of(self.graph.group_hosts(ALL))
    }

    /// Every group, including `all` and `ungrouped`, in creation order.
    pub fn group_names(&self) -> Vec<&str> {
        self.graph
            .groups
            .iter()
            .map(|group| group.name.as_str())
            .collect()
    }

    pub fn is_group(&self, name: &str) -> bool {
        self.graph.group_index.contains_key(name)
    }

    pub fn is_host(&self, name: &str) -> bool {
        self.graph.host_index.contains_key(name)
    }

    /// Hosts named by `pattern`: a group's hosts (through its children), or a
    /// single host. Like Ansible, a group wins over a host of the same name.
    /// `None` if the name is neither; Ansible's implicit `localhost` is not
    /// created.
    pub fn resolve(&self, pattern: &str) -> Option<Vec<&str>> {
        if let Some(&group) = self.graph.group_index.get(pattern) {
            return Some(self.names_of(self.graph.group_hosts(group)));
        }
        self.graph
            .host_index
            .get(pattern)
            .map(|&host| vec![self.graph.hosts[host].name.as_str()])
    }

    /// The groups a host is in, directly or through parents, sorted by name
    /// and without `all` (Ansible's `group_names`).
    pub fn host_groups(&self, host: &str) -> Option<Vec<&str>> {
        let &index = self.graph.host_index.get(host)?;
        let mut names: Vec<&str> = self
            .graph
            .host_groups(index)
            .into_iter()
            .filter(|&group| group != ALL)
            .map(|group| self.graph.groups[group].name.as_str())
            .collect();
        names.sort_unstable();
        Some(names)
    }

    /// A host's variables after Ansible's precedence rules: exactly what
    /// `ansible-inventory --list` shows in `_meta.hostvars` (an empty map for
    /// a host without variables).
    pub fn host_vars(&self, host: &str) -> Option<&Map<String, Value>> {
        self.graph
            .host_index
            .get(host)
            .map(|&index| &self.host_vars[index])
    }

    /// Line and column (1-based) of the key that first defined the host (for
    /// a range such as `web[1:3]`, that key).
    pub fn host_location(&self, host: &str) -> Option<(usize, usize)> {
        self.graph
            .host_index
            .get(host)
            .map(|&index| self.graph.hosts[index].location)
    }

    /// Line and column (1-based) where the group name first appears; `None`
    /// for `all`/`ungrouped` when the file does not mention them.
    pub fn group_location(&self, group: &str) -> Option<(usize, usize)> {
        self.graph
            .group_index
            .get(group)
            .and_then(|&index| self.graph.groups[index].location)
    }

    /// What Ansible would have warned about (unknown keys, duplicate keys, ...).
    pub fn warnings(&self) -> &[InventoryWarning] {
        &self.warnings
    }

    /// The JSON `ansible-inventory -i FILE --list` prints.
    ///
    /// Each group with hosts or children gets `hosts` (direct members) and
    /// `children` in insertion order, empty lists left out; `all` lists only
    /// its children; group vars are not shown (they are folded into
    /// `_meta.hostvars`, where hosts without any variable are omitted).
    pub fn to_ansible_list(&self) -> Value {
        let mut list = Map::new();
        for (index, group) in self.graph.groups.iter().enumerate() {
            let mut entry = Map::new();
            if index != ALL && !group.hosts.is_empty() {
                entry.insert(
                    "hosts".to_string(),
                    self.names_of(group.hosts.clone()).into(),
                );
            }
            if !group.children.is_empty() {
                let children: Vec<&str> = group
                    .children
                    .iter()
                    .map(|&child| self.graph.groups[child].name.as_str())
                    .collect();
                entry.insert("children".to_string(), children.into());
            }
            if !entry.is_empty() {
                list.insert(group.name.clone(), Value::Object(entry));
            }
        }
        let mut hostvars = Map::new();
        for host in self.graph.group_hosts(ALL) {
            if !self.host_vars[host].is_empty() {
                hostvars.insert(
                    self.graph.hosts[host].name.clone(),
                    Value::Object(self.host_vars[host].clone()),
                );
            }
        }
        let mut meta = Map::new();
        meta.insert("hostvars".to_string(), Value::Object(hostvars));
        meta.insert(
            "profile".to_string(),
            Value::String(LIST_PROFILE.to_string()),
        );
        list.insert("_meta".to_string(), Value::Object(meta));
        Value::Object(sorted_map(list))
    }

    fn names_of(&self, hosts: Vec<usize>) -> Vec<&str> {
        hosts
            .into_iter()
            .map(|host| self.graph.hosts[host].name.as_str())
            .collect()
    }
}

/// One host's vars, lowest precedence first (Ansible's default
/// `VARIABLE_PRECEDENCE`): `all` from the inventory, the host's other groups
/// from the inventory, `group_vars/all`, `group_vars/<group>`, the host's own
/// inventory vars, `host_vars/<host>`. Groups go by depth, priority, name;
/// later sources replace whole top-level keys (`hash_behaviour = replace`).
fn resolve_host_vars(
    graph: &Graph,
    host: usize,
    mut files: Option<&mut VarsFiles>,
) -> Result<Map<String, Value>, InventoryError> {
    let groups = graph.sorted_host_groups(host);
    let mut vars = graph.groups[ALL].vars.clone();
    for &group in &groups {
        vars.extend(graph.groups[group].vars.clone());
    }
    if let Some(files) = files.as_deref_mut() {
        vars.extend(files.vars(Entity::Group, &graph.groups[ALL].name)?);
        for &group in &groups {
            vars.extend(files.vars(Entity::Group, &graph.groups[group].name)?);
        }
    }
    vars.extend(graph.hosts[host].vars.clone());
    if let Some(files) = files {
        vars.extend(files.vars(Entity::Host, &graph.hosts[host].name)?);
    }
    for internal in INTERNAL_VARS {
        vars.remove(*internal);
    }
    Ok(sorted_map(vars))
}

/// Ansible prints JSON with `sort_keys=True`; sorting here gives the same key
/// order whether or not `serde_json` keeps insertion order.
fn sorted_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.cmp(b));
    entries
        .into_iter()
        .map(|(key, value)| (key, sorted_value(value)))
        .collect()
}

fn sorted_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(sorted_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;

/// What the plan needs of an inventory; implemented by [`Inventory`] and by
/// synthetic host sets in tests and benchmarks.
pub trait HostDirectory {
    /// The file hosts and groups come from, for diagnostics.
    fn source_path(&self) -> &Path;
    /// Hosts of a group (recursively) or the host itself; `None` if the name is neither.
    fn expand(&self, pattern: &str) -> Option<Vec<String>>;
    /// A host's fully resolved variables.
    fn host_vars(&self, host: &str) -> Option<&Map<String, Value>>;
    /// Where a host is first defined, as 1-based line and column.
    fn host_location(&self, host: &str) -> Option<(usize, usize)>;
}

impl HostDirectory for Inventory {
    fn source_path(&self) -> &Path {
        self.path()
    }

    fn expand(&self, pattern: &str) -> Option<Vec<String>> {
        self.resolve(pattern)
            .map(|hosts| hosts.into_iter().map(str::to_string).collect())
    }

    fn host_vars(&self, host: &str) -> Option<&Map<String, Value>> {
        Inventory::host_vars(self, host)
    }

    fn host_location(&self, host: &str) -> Option<(usize, usize)> {
        Inventory::host_location(self, host)
    }
}

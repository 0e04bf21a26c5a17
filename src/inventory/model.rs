//! The inventory graph (groups, hosts, their vars) and the walk over a parsed
//! YAML inventory that fills it, following Ansible's `yaml` inventory plugin
//! and `InventoryData`: same accept/warn/reject decisions, same ordering.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::error::{InventoryError, InventoryWarning};
use super::pattern;
use super::python;
use super::yaml::{Data, Node};
use crate::limits::MAX_INVENTORY_HOSTS;

pub(crate) const ALL: usize = 0;
pub(crate) const UNGROUPED: usize = 1;

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    /// Where the group name first appears; `None` for implicit `all`/`ungrouped`.
    pub(crate) location: Option<(usize, usize)>,
    pub(crate) vars: Map<String, Value>,
    /// `ansible_group_priority`, which Ansible keeps out of the group's vars.
    pub(crate) priority: i128,
    /// Longest path from `all`, as Ansible maintains it; orders group vars.
    pub(crate) depth: usize,
    /// Direct members, in the order they were added.
    pub(crate) hosts: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) parents: Vec<usize>,
}

impl Group {
    fn new(name: String, location: Option<(usize, usize)>) -> Group {
        Group {
            name,
            location,
            vars: Map::new(),
            priority: 1,
            depth: 0,
            hosts: Vec::new(),
            children: Vec::new(),
            parents: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) name: String,
    /// Where the host (or the range pattern that produced it) first appears.
    pub(crate) location: (usize, usize),
    pub(crate) vars: Map<String, Value>,
    /// Groups the host was added to directly.
    pub(crate) groups: Vec<usize>,
}

/// Groups and hosts in Ansible's insertion order, with name lookups.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) groups: Vec<Group>,
    pub(crate) group_index: HashMap<String, usize>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) host_index: HashMap<String, usize>,
}

impl Graph {
    fn new() -> Graph {
        let mut graph = Graph {
            groups: Vec::new(),
            group_index: HashMap::new(),
            hosts: Vec::new(),
            host_index: HashMap::new(),
        };
        // Ansible always starts with `all` and `ungrouped`, the latter a child of the former.
        for name in ["all", "ungrouped"] {
            graph
                .group_index
                .insert(name.to_string(), graph.groups.len());
            graph.groups.push(Group::new(name.to_string(), None));
        }
        graph.groups[ALL].children.push(UNGROUPED);
        graph.groups[UNGROUPED].parents.push(ALL);
        graph
    }

    /// Every group above `group` (not including it).
    pub(crate) fn ancestors(&self, group: usize) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut pending: Vec<usize> = self.groups[group].parents.clone();
        while let Some(next) = pending.pop() {
            if seen.insert(next) {
                pending.extend(&self.groups[next].parents);
            }
        }
        seen
    }

    /// The groups a host belongs to, directly or through parents.
    pub(crate) fn host_groups(&self, host: usize) -> HashSet<usize> {
        let mut groups = HashSet::new();
        for &group in &self.hosts[host].groups {
            groups.insert(group);
            groups.extend(self.ancestors(group));
        }
        groups
    }

    /// Hosts of a group and its descendants, in Ansible's order: the group's
    /// own hosts, then its children's, then deeper levels.
    pub(crate) fn group_hosts(&self, group: usize) -> Vec<usize> {
        let mut ordered = vec![group];
        let mut seen: HashSet<usize> = HashSet::from([group]);
        let mut level = vec![group];
        while !level.is_empty() {
            let mut next_level = Vec::new();
            for &parent in &level {
                for &child in &self.groups[parent].children {
                    if seen.insert(child) {
                        next_level.push(child);
                        ordered.push(child);
                    }
                }
            }
            level = next_level;
        }
        let mut hosts = Vec::new();
        let mut seen_hosts = HashSet::new();
        for member_group in ordered {
            for &host in &self.groups[member_group].hosts {
                if seen_hosts.insert(host) {
                    hosts.push(host);
                }
            }
        }
        hosts
    }

    /// A host's groups other than `all`, in the order their vars apply:
    /// by depth, then `ansible_group_priority`, then name.
    pub(crate) fn sorted_host_groups(&self, host: usize) -> Vec<usize> {
        let mut groups: Vec<usize> = self
            .host_groups(host)
            .into_iter()
            .filter(|&group| group != ALL)
            .collect();
        groups.sort_by(|&a, &b| {
            let (a, b) = (&self.groups[a], &self.groups[b]);
            (a.depth, a.priority, &a.name).cmp(&(b.depth, b.priority, &b.name))
        });
        groups
    }
}

/// A `children:` entry: a group, or (when its definition was not a mapping)
/// just the key, which Ansible then looks up as a group or host.
enum Child {
    Group(usize),
    Name(Node),
}

/// Fills a [`Graph`] from a parsed inventory file.
pub(crate) struct Builder<'a> {
    path: &'a Path,
    pub(crate) graph: Graph,
    pub(crate) warnings: Vec<InventoryWarning>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(path: &'a Path) -> Builder<'a> {
        Builder {
            path,
            graph: Graph::new(),
            warnings: Vec::new(),
        }
    }

    fn structure_error(&self, node: &Node, message: String) -> InventoryError {
        InventoryError::Structure {
            path: self.path.to_path_buf(),
            line: node.line,
            column: node.column,
            message,
        }
    }

    fn warn(&mut self, node: &Node, message: String) {
        self.warnings.push(InventoryWarning {
            path: self.path.to_path_buf(),
            line: node.line,
            column: node.column,
            message,
        });
    }

    /// The top level: a non-empty mapping of group names.
    pub(crate) fn read_document(&mut self, root: Option<Node>) -> Result<(), InventoryError> {
        let Some(root) = root else {
            // No document at all (empty or comments only): Ansible's yaml plugin
            // rejects it, but its ini plugin then reads it as an empty inventory.
            self.warnings.push(InventoryWarning {
                path: self.path.to_path_buf(),
                line: 1,
                column: 1,
                message: "the inventory file has no content; it defines no hosts".to_string(),
            });
            return Ok(());
        };
        if matches!(root.data, Data::Null) {
            return Err(self.structure_error(&root, "the inventory document is empty".to_string()));
        }
        let entries = match root.data {
            Data::Map(ref entries) if entries.is_empty() => {
                return Err(self.structure_error(&root, "the inventory file is empty".to_string()));
            }
            Data::Map(entries) => entries,
            ref other => {
                let message = format!(
                    "an inventory must be a mapping of group names, found {}",
                    other.type_name()
                );
                return Err(self.structure_error(&root, message));
            }
        };
        if let Some((key, _)) = entries
            .iter()
            .find(|(key, value)| key.data.as_str() == Some("plugin") && !value.data.is_falsy())
        {
            let message = "this is an inventory plugin configuration (it has a `plugin` key), not a yaml inventory".to_string();
            return Err(self.structure_error(key, message));
        }
        for (key, value) in entries {
            self.read_group(&key, value)?;
        }
        Ok(())
    }

    fn read_group(&mut self, key: &Node, definition: Node) -> Result<Child, InventoryError> {
        if !matches!(definition.data, Data::Map(_) | Data::Null) {
            // Ansible warns and skips the definition, but a `children:` entry
            // still refers to the name.
            let message = format!(
                "skipping `{}` as it is not a valid group definition ({})",
                key.data.key_string(),
                definition.data.type_name()
            );
            self.warn(key, message);
            return Ok(Child::Name(key.clone()));
        }
        let group = self.add_group(key)?;
        let Data::Map(mut entries) = definition.data else {
            return Ok(Child::Group(group));
        };
        let group_name = self.graph.groups[group].name.clone();

        // Ansible checks the three sections (in this order) before using any:
        // a plain string means a single name, anything else but a mapping is fatal.
        for (section, expected) in [
            ("vars", "variable names"),
            ("children", "group names"),
            ("hosts", "host names"),
        ] {
            let Some((section_key, section_value)) = entries
                .iter_mut()
                .find(|(key, _)| key.data.as_str() == Some(section))
            else {
                continue;
            };
            if section_value.data.as_str().is_some() {
                let name = section_value.clone();
                let empty = Node {
                    data: Data::Null,
                    line: name.line,
                    column: name.column,
                };
                section_value.data = Data::Map(vec![(name, empty)]);
            }
            if !matches!(section_value.data, Data::Map(_) | Data::Null) {
                let message = format!(
                    "group `{group_name}` has `{section}` as {}; expected a mapping of {expected}",
                    section_value.data.type_name()
                );
                return Err(self.structure_error(section_key, message));
            }
        }

        for (entry_key, entry_value) in entries {
            match &entry_value.data {
                Data::Null => continue,
                Data::Map(_) => {}
                other => {
                    let message = format!(
                        "skipping key `{}` in group `{group_name}` as it is not a mapping ({})",
                        entry_key.data.key_string(),
                        other.type_name()
                    );
                    self.warn(&entry_key, message);
                    continue;
                }
            }
            let Data::Map(items) = entry_value.data else {
                continue;
            };
            match entry_key.data.as_str() {
                Some("vars") => {
                    for (name, value) in items {
                        self.set_group_variable(group, &name, &value)?;
                    }
                }
                Some("children") => {
                    for (child_key, child_definition) in items {
                        let child = self.read_group(&child_key, child_definition)?;
                        self.add_child(group, child, &child_key)?;
                    }
                }
                Some("hosts") => {
                    for (host_key, host_vars) in items {
                        self.read_host(group, &host_key, host_vars)?;
                    }
                }
                _ => {
                    let message = format!(
                        "skipping unexpected key `{}` in group `{group_name}`; only `vars`, `children` and `hosts` are valid",
                        entry_key.data.key_string()
                    );
                    self.warn(&entry_key, message);
                }
            }
        }
        Ok(Child::Group(group))
    }

    fn add_group(&mut self, key: &Node) -> Result<usize, InventoryError> {
        if key.data.is_falsy() {
            return Err(self.structure_error(
                key,
                format!(
                    "invalid empty or false group name `{}`",
                    key.data.key_string()
                ),
            ));
        }
        let Some(name) = key.data.as_str() else {
            let message = format!(
                "group name `{}` must be a string, found {}",
                key.data.key_string(),
                key.data.type_name()
            );
            return Err(self.structure_error(key, message));
        };
        if let Some(&existing) = self.graph.group_index.get(name) {
            let group = &mut self.graph.groups[existing];
            group.location.get_or_insert((key.line, key.column));
            return Ok(existing);
        }
        if !is_identifier(name) {
            // Ansible's default (`force_valid_group_names = never`) only warns.
            self.warn(
                key,
                format!(
                    "group name `{name}` contains characters that are invalid in variable names"
                ),
            );
        }
        let index = self.graph.groups.len();
        self.graph.group_index.insert(name.to_string(), index);
        self.graph
            .groups
            .push(Group::new(name.to_string(), Some((key.line, key.column))));
        Ok(index)
    }

    fn add_child(&mut self, parent: usize, child: Child, key: &Node) -> Result<(), InventoryError> {
        let child = match child {
            Child::Group(group) => group,
            Child::Name(name_node) => {
                let name = name_node.data.as_str().unwrap_or_default();
                if let Some(&group) = self.graph.group_index.get(name) {
                    group
                } else if let Some(&host) = self.graph.host_index.get(name) {
                    // Ansible's add_child also accepts a host name.
                    self.add_host_to_group(parent, host);
                    return Ok(());
                } else {
                    let message = format!(
                        "`{}` is not a known host nor group",
                        name_node.data.key_string()
                    );
                    return Err(self.structure_error(key, message));
                }
            }
        };
        self.add_child_group(parent, child)
            .map_err(|message| self.structure_error(key, message))
    }

    fn add_child_group(&mut self, parent: usize, child: usize) -> Result<(), String> {
        if parent == child {
            return Err(format!(
                "group `{}` cannot be a child of itself",
                self.graph.groups[parent].name
            ));
        }
        if self.graph.groups[parent].children.contains(&child) {
            return Ok(());
        }
        if self.graph.ancestors(parent).contains(&child) {
            return Err(format!(
                "adding group `{}` as a child of `{}` creates a dependency loop",
                self.graph.groups[child].name, self.graph.groups[parent].name
            ));
        }
        self.graph.groups[parent].children.push(child);
        if !self.graph.groups[child].parents.contains(&parent) {
            self.graph.groups[child].parents.push(parent);
        }
        Ok(())
    }

    fn read_host(&mut self, group: usize, key: &Node, vars: Node) -> Result<(), InventoryError> {
        let Some(host_key) = key.data.as_str() else {
            let message = format!(
                "host pattern `{}` must be a string, found {}; quote integers and floats",
                key.data.key_string(),
                key.data.type_name()
            );
            return Err(self.structure_error(key, message));
        };
        let split = pattern::split_port(host_key);
        let names = pattern::expand_ranges(&split.pattern).map_err(|message| {
            InventoryError::HostPattern {
                path: self.path.to_path_buf(),
                line: key.line,
                column: key.column,
                pattern: host_key.to_string(),
                message,
            }
        })?;
        // Ansible uses `vars or {}`: any empty/false value means no vars.
        let entries = match vars.data {
            ref falsy if falsy.is_falsy() => Vec::new(),
            Data::Map(entries) => entries,
            ref other => {
                let message = format!(
                    "host `{host_key}` has vars as {}; expected a mapping of variable names",
                    other.type_name()
                );
                return Err(self.structure_error(&vars, message));
            }
        };
        for name in names {
            let host = self.add_host(&name, split.port, key)?;
            // Each pattern is bounded, but a file may hold many of them.
            if self.graph.hosts.len() > MAX_INVENTORY_HOSTS {
                return Err(InventoryError::HostPattern {
                    path: self.path.to_path_buf(),
                    line: key.line,
                    column: key.column,
                    pattern: host_key.to_string(),
                    message: format!(
                        "the inventory has more than {MAX_INVENTORY_HOSTS} hosts, the limit"
                    ),
                });
            }
            self.add_host_to_group(group, host);
            for (var_name, value) in &entries {
                self.set_host_variable(&name, var_name, value)?;
            }
        }
        Ok(())
    }

    fn add_host(
        &mut self,
        name: &str,
        port: Option<u64>,
        key: &Node,
    ) -> Result<usize, InventoryError> {
        if name.is_empty() {
            return Err(self.structure_error(key, "host name must not be empty".to_string()));
        }
        if let Some(&existing) = self.graph.host_index.get(name) {
            return Ok(existing);
        }
        let mut vars = Map::new();
        // The port only counts when the host is created, and `:0` is ignored.
        if let Some(port) = port.filter(|port| *port != 0) {
            vars.insert("ansible_port".to_string(), Value::from(port));
        }
        let index = self.graph.hosts.len();
        self.graph.host_index.insert(name.to_string(), index);
        self.graph.hosts.push(Host {
            name: name.to_string(),
            location: (key.line, key.column),
            vars,
            groups: Vec::new(),
        });
        Ok(index)
    }

    fn add_host_to_group(&mut self, group: usize, host: usize) {
        // The host's few groups, not the group's many hosts: the two lists
        // always change together, and this keeps large ranges linear.
        if !self.graph.hosts[host].groups.contains(&group) {
            self.graph.groups[group].hosts.push(host);
            self.graph.hosts[host].groups.push(group);
        }
    }

    /// Ansible looks the name up as a group first, so vars given to a host
    /// that shares its name with a group end up on the group.
    fn set_host_variable(
        &mut self,
        entity: &str,
        name: &Node,
        value: &Node,
    ) -> Result<(), InventoryError> {
        if let Some(&group) = self.graph.group_index.get(entity) {
            return self.set_group_variable(group, name, value);
        }
        self.check_variable_name(name);
        if let Some(&host) = self.graph.host_index.get(entity) {
            self.graph.hosts[host]
                .vars
                .insert(name.data.key_string(), value.data.to_json());
        }
        Ok(())
    }

    fn set_group_variable(
        &mut self,
        group: usize,
        name: &Node,
        value: &Node,
    ) -> Result<(), InventoryError> {
        self.check_variable_name(name);
        if name.data.as_str() == Some("ansible_group_priority") {
            let Some(priority) = python_int(&value.data) else {
                let message = format!(
                    "`ansible_group_priority` of group `{}` must be an integer, found {} `{}`",
                    self.graph.groups[group].name,
                    value.data.type_name(),
                    value.data.key_string()
                );
                return Err(self.structure_error(value, message));
            };
            self.graph.groups[group].priority = priority;
            return Ok(());
        }
        self.graph.groups[group]
            .vars
            .insert(name.data.key_string(), value.data.to_json());
        Ok(())
    }

    fn check_variable_name(&mut self, name: &Node) {
        let valid = name.data.as_str().is_some_and(is_identifier);
        if !valid {
            let message = format!(
                "accepting inventory variable with invalid name `{}`",
                name.data.key_string()
            );
            self.warn(name, message);
        }
    }

    /// Ansible's `reconcile_inventory`: parentless groups join `all`; hosts
    /// in no group but `all` join `ungrouped`, others leave it. Then depths.
    pub(crate) fn reconcile(&mut self) -> Result<(), InventoryError> {
        for group in 0..self.graph.groups.len() {
            if group != ALL && self.graph.groups[group].parents.is_empty() {
                // Fails only when `all` was made a child of this group.
                if let Err(message) = self.add_child_group(ALL, group) {
                    let (line, column) = self.graph.groups[group].location.unwrap_or((1, 1));
                    return Err(InventoryError::Structure {
                        path: self.path.to_path_buf(),
                        line,
                        column,
                        message,
                    });
                }
            }
        }
        for host in 0..self.graph.hosts.len() {
            let groups = self.graph.host_groups(host);
            let elsewhere = groups
                .iter()
                .any(|&group| group != ALL && group != UNGROUPED);
            if groups.contains(&UNGROUPED) {
                if elsewhere && self.graph.hosts[host].groups.contains(&UNGROUPED) {
                    self.graph.groups[UNGROUPED]
                        .hosts
                        .retain(|&member| member != host);
                    self.graph.hosts[host]
                        .groups
                        .retain(|&member| member != UNGROUPED);
                }
            } else if !elsewhere {
                self.add_host_to_group(UNGROUPED, host);
            }
        }
        let mut depths: Vec<Option<usize>> = vec![None; self.graph.groups.len()];
        for group in 0..self.graph.groups.len() {
            let depth = self.depth_of(group, &mut depths);
            self.graph.groups[group].depth = depth;
        }
        let conflicts: Vec<(String, (usize, usize))> = self
            .graph
            .hosts
            .iter()
            .filter(|host| self.graph.group_index.contains_key(&host.name))
            .map(|host| (host.name.clone(), host.location))
            .collect();
        for (name, (line, column)) in conflicts {
            self.warnings.push(InventoryWarning {
                path: self.path.to_path_buf(),
                line,
                column,
                message: format!("found both group and host with same name: `{name}`"),
            });
        }
        Ok(())
    }

    /// Longest path from a root; the graph has no cycles (checked on insert).
    fn depth_of(&self, group: usize, depths: &mut Vec<Option<usize>>) -> usize {
        if let Some(depth) = depths[group] {
            return depth;
        }
        let depth = self.graph.groups[group]
            .parents
            .clone()
            .into_iter()
            .map(|parent| self.depth_of(parent, depths) + 1)
            .max()
            .unwrap_or(0);
        depths[group] = Some(depth);
        depth
    }
}

/// Python's `int(value)` as Ansible applies it to `ansible_group_priority`.
fn python_int(data: &Data) -> Option<i128> {
    match data {
        Data::Int(number) => Some(*number),
        Data::Bool(flag) => Some(i128::from(*flag)),
        Data::Float(number) => python::int_from_float(*number),
        Data::Str(text) | Data::Unsafe(text) => python::int_from_str(text),
        _ => None,
    }
}

/// A Python identifier made of word characters (what Ansible accepts without
/// a warning for group and variable names).
fn is_identifier(name: &str) -> bool {
    let mut characters = name.chars();
    matches!(characters.next(), Some(first) if first.is_alphabetic() || first == '_')
        && characters.all(|character| character.is_alphanumeric() || character == '_')
}

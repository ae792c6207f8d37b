//! What LXD needs to run a container on the veth pairs vmfabric manages:
//! the instance (or profile) configuration with one `nictype: physical`
//! NIC per VM NIC and the guest's cloud-init network-config.
//!
//! The agent creates each pair on the node, `<vm>_net<N>` on the host side
//! and `<vm>_g<N>` as the peer, and gives the peer the VM's MAC itself, so
//! the anti-spoofing rules (keyed on that MAC) hold whatever LXD does. LXD
//! moves the peer into the container as `eth<N>` when it starts and back
//! (with its name and MAC) when it stops; the host side never moves.

use std::fmt::Write;

use vmfabric_model::{GuestNetwork, Vm};

use crate::build::guest_peer;
use crate::render::guest;

/// The YAML of an instance or profile: `config` with
/// `cloud-init.network-config` (what `guest-config --format cloud-init`
/// renders) and `devices` with the NICs. Usable as it is with
/// `lxc init IMAGE VM < FILE`, `lxc config edit VM < FILE` or
/// `lxc profile edit PROFILE < FILE`.
pub fn instance(vm: &Vm, net: &GuestNetwork) -> String {
    let mut s = format!(
        "# LXD configuration of VM {name}, written by vmfabric: each NIC is the peer of\n\
         # the veth pair the vmfabric agent created on node {node} (nictype physical),\n\
         # with the VM's MAC. Use it as it is:\n\
         #   lxc init IMAGE {name} < THIS_FILE\n\
         # The peers exist once the agent has applied the node's plan.\n\
         config:\n  cloud-init.network-config: |\n",
        name = vm.name,
        node = vm.node
    );
    // A literal block: the document's own lines, indented under the key.
    for line in guest::cloud_init(vm, net).lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "    {line}");
        }
    }
    s.push_str("devices:\n");
    for nic in &vm.nics {
        let _ = write!(
            s,
            "  eth{i}:\n    type: nic\n    nictype: physical\n    parent: {parent}\n    \
             hwaddr: \"{mac}\"\n    name: eth{i}\n",
            i = nic.index,
            parent = guest_peer(&nic.host_interface.to_string()),
            mac = nic.mac
        );
    }
    s
}

//! What libvirt needs to run a KVM VM on the taps vmfabric manages: the
//! `<interface>` elements alone (to paste into an existing domain), or a
//! complete, minimal domain definition (`virsh define`).
//!
//! Every NIC is `type='ethernet'` on the agent's persistent tap with
//! `managed='no'`: libvirt opens the tap the agent made and never creates,
//! renames or deletes it, so the node's routes, bridge ports and
//! anti-spoofing rules (keyed on the tap and the VM's MAC) stay the agent's.

use std::fmt::Write;

use vmfabric_model::Vm;

/// Memory and vCPUs of the rendered domain: a small guest the operator
/// resizes; vmfabric knows networks, not machine sizes.
pub const DOMAIN_MEMORY_MIB: u32 = 1024;
pub const DOMAIN_VCPUS: u32 = 1;

/// The `<interface>` elements of `vm`, each on `indent` spaces.
fn interfaces(vm: &Vm, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut s = String::new();
    for nic in &vm.nics {
        let _ = write!(
            s,
            "{pad}<interface type='ethernet'>\n\
             {pad}  <mac address='{}'/>\n\
             {pad}  <target dev='{}' managed='no'/>\n\
             {pad}  <model type='virtio'/>\n\
             {pad}</interface>\n",
            nic.mac, nic.host_interface
        );
    }
    s
}

/// libvirt `<interface>` elements for a KVM VM: an existing tap
/// (`managed='no'`), the guest MAC, virtio.
pub fn interfaces_xml(vm: &Vm) -> String {
    format!(
        "<!-- interfaces of VM {}, written by vmfabric -->\n{}",
        vm.name,
        interfaces(vm, 0)
    )
}

/// Text for an XML attribute in single quotes.
fn attr(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '\'' => s.push_str("&apos;"),
            '"' => s.push_str("&quot;"),
            c => s.push(c),
        }
    }
    s
}

/// The image format libvirt is told for a disk path: qcow2 by extension,
/// raw otherwise (libvirt never probes a format, for safety).
fn disk_format(path: &str) -> &'static str {
    if path.to_ascii_lowercase().ends_with(".qcow2") {
        "qcow2"
    } else {
        "raw"
    }
}

/// A complete, minimal KVM domain for `vm`: name, memory, vCPU, HVM boot
/// from a virtio disk, a serial console, and one NIC per VM NIC on the
/// agent's tap. `disk` is the guest's disk image (an absolute path the
/// caller has checked, see `files::GuestOptions`); without one, the domain
/// names a placeholder the operator replaces, and says so in a comment.
pub fn domain(vm: &Vm, disk: Option<&str>) -> String {
    let mut s = format!(
        "<!-- libvirt domain of VM {name}, written by vmfabric: `virsh define` this file.\n     \
         Memory and vCPUs are a small default; change them to the VM's size. -->\n\
         <domain type='kvm'>\n  \
         <name>{name}</name>\n  \
         <memory unit='MiB'>{DOMAIN_MEMORY_MIB}</memory>\n  \
         <vcpu>{DOMAIN_VCPUS}</vcpu>\n  \
         <os>\n    <type>hvm</type>\n    <boot dev='hd'/>\n  </os>\n  \
         <features>\n    <acpi/>\n    <apic/>\n  </features>\n  \
         <devices>\n",
        name = vm.name
    );
    let path = match disk {
        Some(p) => p.to_string(),
        None => {
            s.push_str(
                "    <!-- PLACEHOLDER: replace the source file with the VM's disk image \
                 (and the driver type with its format), or render again with a disk path. -->\n",
            );
            format!("/var/lib/libvirt/images/{}.qcow2", vm.name)
        }
    };
    let _ = write!(
        s,
        "    <disk type='file' device='disk'>\n      \
         <driver name='qemu' type='{}'/>\n      \
         <source file='{}'/>\n      \
         <target dev='vda' bus='virtio'/>\n    \
         </disk>\n",
        disk_format(&path),
        attr(&path)
    );
    s.push_str(&interfaces(vm, 4));
    s.push_str(
        "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n    \
         <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n  \
         </devices>\n</domain>\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_text_is_escaped() {
        assert_eq!(attr("/a/b'&<>\".img"), "/a/b&apos;&amp;&lt;&gt;&quot;.img");
    }

    #[test]
    fn disk_format_follows_the_extension() {
        assert_eq!(disk_format("/x/vm1.qcow2"), "qcow2");
        assert_eq!(disk_format("/x/VM1.QCOW2"), "qcow2");
        assert_eq!(disk_format("/x/vm1.img"), "raw");
        assert_eq!(disk_format("/dev/vg0/vm1"), "raw");
    }
}

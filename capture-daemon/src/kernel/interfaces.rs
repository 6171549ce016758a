//! The host's interfaces: their indexes and addresses.
use super::*;

/// The index of a network interface, or a clear error.
pub fn interface_index(iface: &str) -> Result<u32, KernelError> {
    let name = CString::new(iface).map_err(|_| KernelError::NoSuchInterface(iface.to_string()))?;
    // SAFETY: NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(KernelError::NoSuchInterface(iface.to_string())),
        index => Ok(index),
    }
}

/// The addresses the host uses on `iface`, IPv6 link-local ones left out (every IPv6
/// interface has one): an interface with any of them carries the host's own traffic.
pub fn host_addresses(iface: &str) -> Vec<std::net::IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return addresses;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let node = unsafe { &*entry };
        entry = node.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(node.ifa_name) };
        if node.ifa_addr.is_null() || name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it names.
        let address = unsafe {
            match i32::from((*node.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let v4 = &*(node.ifa_addr as *const libc::sockaddr_in);
                    Some(std::net::IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 => {
                    let v6 = &*(node.ifa_addr as *const libc::sockaddr_in6);
                    Some(std::net::IpAddr::from(v6.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        match address {
            Some(std::net::IpAddr::V6(v6)) if v6.segments()[0] & 0xffc0 == 0xfe80 => {}
            Some(address) => addresses.push(address),
            None => {}
        }
    }
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

//! Creating a named Linux TUN device (`/dev/net/tun`, `TUNSETIFF` with
//! `IFF_TUN | IFF_NO_PI`), shared by the LMA's SGi side, `ue-emu --tun` and the
//! benchmark's `dataplane-relay`: [`create`] gives the [`File`] for a blocking loop,
//! [`AsyncTun`] the device for a tokio driver. Callers set MTU, addresses, routes and
//! link state with the `ip` command; the device goes away when the file is closed.
//!
//! Written by hand because it is one ioctl: the `tun` crate would add nix, bytes, log
//! and a build script for the same call, and configures the device through its own
//! ioctls where our callers use `ip`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use thiserror::Error;

/// `_IOW('T', 202, int)` from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// The longest device name the kernel takes (`IFNAMSIZ` less the terminating NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Why a TUN device could not be created.
#[derive(Debug, Error)]
pub enum TunError {
    #[error("TUN device name `{name}` must be 1 to {MAX_NAME_LEN} octets")]
    Name { name: String },
    #[error("opening /dev/net/tun for TUN device {name} (needs root or CAP_NET_ADMIN)")]
    Open {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("creating TUN device {name} (TUNSETIFF; needs root or CAP_NET_ADMIN)")]
    Create {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registering TUN device {name} with tokio")]
    Register {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// How reads and writes on the device behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads wait for a packet (one thread per direction).
    Blocking,
    /// `O_NONBLOCK`, for a readiness loop (tokio's `AsyncFd`).
    NonBlocking,
}

/// `struct ifreq` as `TUNSETIFF` reads it: the name and the flags, padded to its size.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TUN device `name` (`IFF_TUN | IFF_NO_PI`: every read and write is one bare IP
/// packet). It is down and without addresses until the caller configures it.
pub fn create(name: &str, mode: Mode) -> Result<File, TunError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN {
        return Err(TunError::Name { name: name.into() });
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if mode == Mode::NonBlocking {
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open("/dev/net/tun")
        .map_err(|source| TunError::Open {
            name: name.into(),
            source,
        })?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: a valid fd and a properly sized, initialised ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc != 0 {
        return Err(TunError::Create {
            name: name.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

/// A TUN device driven by tokio: each read and write is one IP packet.
#[derive(Debug)]
pub struct AsyncTun {
    device: tokio::io::unix::AsyncFd<File>,
}

impl AsyncTun {
    /// Creates TUN device `name` (see [`create`]; call inside the runtime).
    pub fn create(name: &str) -> Result<AsyncTun, TunError> {
        let file = create(name, Mode::NonBlocking)?;
        // SAFETY: the File owns its descriptor, which therefore stays open and refers to
        // the same device until the AsyncFd, which owns the File, is dropped.
        let device = unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(|e| {
            TunError::Register {
                name: name.into(),
                source: e.into_parts().1,
            }
        })?;
        Ok(AsyncTun { device })
    }

    /// Reads one packet into `buffer`: its length.
    pub async fn recv(&self, buffer: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.device.readable().await?;
            match ready.try_io(|f| f.get_ref().read(buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads one packet if one is waiting (`Ok(None)` when none is).
    pub fn try_recv(&self, buffer: &mut [u8]) -> std::io::Result<Option<usize>> {
        match self.device.get_ref().read(buffer) {
            Ok(len) => Ok(Some(len)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one packet.
    pub async fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        loop {
            let mut ready = self.device.writable().await?;
            match ready.try_io(|f| f.get_ref().write(packet)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_1_to_15_octets_are_refused_before_opening() {
        for name in ["", "a-name-of-16-oct"] {
            let err = create(name, Mode::Blocking).unwrap_err();
            assert!(matches!(err, TunError::Name { .. }), "{name}: {err}");
            assert!(err.to_string().contains("1 to 15 octets"), "{err}");
        }
    }
}

//! IPVS against a real kernel: this host's kernel has no ip_vs, Debian's has. The test fetches
//! Debian's current `linux-image-*-amd64` (apt-get download, never installed), boots its
//! uncompressed vmlinux through the PVH entry in qemu (TCG: the host's /dev/kvm cannot boot a
//! stock kernel) with a tiny initramfs — busybox, the ip_vs modules, a real `ipvsadm`, and
//! `ipvs-guest`, our suite built as a static binary — and reads the results from the guest's
//! second serial port. One boot for the whole suite.
//!
//! Everything slow is cached under `<target dir>/ipvs-qemu/`: the kernel, the base initramfs
//! and the static build, so reruns cost one boot. Needs root (apt-get) on Debian.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Boot + suite took 4–6 s on a quiet machine and up to ~30 s on a loaded one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Modules loaded before the suite starts; ip_vs itself and its schedulers are left to the
/// kernel's on-demand loading, which the suite relies on like ipvsadm does.
const PRELOAD: &[&str] = &["crc32c_generic"];

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Installs Debian packages whose `file` is missing (tests run as root on a fresh machine).
fn ensure_installed(file: &str, packages: &[&str]) {
    if Path::new(file).exists() {
        return;
    }
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"));
    };
    apt(&["update", "-q"]);
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args);
    assert!(
        Path::new(file).exists(),
        "{file} still missing after apt-get"
    );
}

/// `<target>/release/deps/ipvs_qemu-…` → `<target>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The package `linux-image-amd64` currently points at, e.g. `linux-image-6.1.0-56-amd64`.
fn kernel_package() -> String {
    for _ in 0..2 {
        let out = String::from_utf8(run(
            Command::new("apt-cache").args(["depends", "linux-image-amd64"])
        ))
        .unwrap();
        if let Some(p) = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Depends: "))
            .filter(|p| p.starts_with("linux-image-"))
        {
            return p.to_string();
        }
        // A fresh container has no package lists yet.
        run(Command::new("apt-get").args(["update", "-q"]));
    }
    panic!("apt-cache depends linux-image-amd64 names no kernel package");
}

/// Downloads and unpacks the kernel package once; returns (tree, kernel version).
fn kernel_tree(cache: &Path, pkg: &str) -> (PathBuf, String) {
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let tree = cache.join("tree");
    let stamp = cache.join("tree.done");
    if !stamp.exists() {
        let _ = fs::remove_dir_all(&tree);
        let dl = cache.join("download");
        let _ = fs::remove_dir_all(&dl);
        fs::create_dir_all(&dl).unwrap();
        // apt-get download drops privileges to _apt, which must be able to write there.
        run(Command::new("chmod").args(["0777", dl.to_str().unwrap()]));
        run(Command::new("apt-get")
            .args(["download", "-q", pkg])
            .current_dir(&dl));
        let deb = fs::read_dir(&dl)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("apt-get download left no .deb");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
        fs::remove_dir_all(&dl).unwrap();
        // The package has no modules.dep; busybox's depmod makes one for the whole tree so the
        // dependency closure of the ip_vs modules can be read from it.
        run(Command::new("/bin/busybox")
            .args(["depmod", "-b"])
            .arg(&tree)
            .arg(&version));
        fs::write(&stamp, b"").unwrap();
    }
    (tree, version)
}

/// The kernel as an uncompressed ELF: booting it through its PVH entry skips ~5 s of
/// decompression under TCG.
fn vmlinux(cache: &Path, tree: &Path, version: &str) -> PathBuf {
    let out = cache.join("vmlinux");
    if out.exists() {
        return out;
    }
    let bz = fs::read(tree.join(format!("boot/vmlinuz-{version}"))).unwrap();
    let magic = b"\xfd7zXZ\x00";
    let at = bz
        .windows(magic.len())
        .position(|w| w == magic)
        .expect("vmlinuz without an xz payload (Debian's kernels are CONFIG_KERNEL_XZ)");
    // busybox's unxz lacks the x86 BCJ filter the kernel's xz stream uses: xz-utils it is.
    let mut child = Command::new("/usr/bin/xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let payload = bz[at..].to_vec();
    let writer = std::thread::spawn(move || {
        // xz stops reading at the end of the stream; the rest of the bzImage is not xz.
        let _ = stdin.write_all(&payload);
    });
    let elf = child.wait_with_output().unwrap().stdout;
    writer.join().unwrap();
    assert!(
        elf.starts_with(b"\x7fELF") && elf.len() > 10 << 20,
        "vmlinux extraction failed ({} bytes)",
        elf.len()
    );
    let tmp = cache.join("vmlinux.tmp");
    fs::write(&tmp, elf).unwrap();
    fs::rename(&tmp, &out).unwrap();
    out
}

/// A newc cpio archive, written by hand: a few dozen entries do not need a tool.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad(4);
        self.buf.extend_from_slice(data);
        self.pad(4);
    }

    fn pad(&mut self, to: usize) {
        while !self.buf.len().is_multiple_of(to) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    /// Adds `name` and every missing parent directory.
    fn file(&mut self, dirs: &mut Vec<String>, name: &str, mode: u32, data: &[u8]) {
        let mut p = String::new();
        for part in name.trim_start_matches('/').split('/').collect::<Vec<_>>()[..]
            .split_last()
            .unwrap()
            .1
        {
            p = format!("{p}/{part}");
            if !dirs.contains(&p) {
                self.dir(&p);
                dirs.push(p.clone());
            }
        }
        self.entry(name, mode, data, (0, 0));
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }

    /// Ends the archive, padded to 512 bytes so that the kernel finds a second one appended.
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.pad(512);
        self.buf
    }
}

/// busybox, the modules, ipvsadm and its libraries: everything but our binary. Cached.
fn base_initramfs(cache: &Path, tree: &Path, version: &str) -> Vec<u8> {
    let out = cache.join("base.cpio");
    if let Ok(b) = fs::read(&out) {
        return b;
    }
    let mut c = Cpio::default();
    let mut dirs = Vec::new();
    for d in ["/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp"] {
        c.dir(d);
        dirs.push(d.to_string());
    }
    c.entry("/dev/console", 0o020600, &[], (5, 1));
    c.file(
        &mut dirs,
        "/bin/busybox",
        0o100755,
        &fs::read("/bin/busybox").unwrap(),
    );
    // The kernel's on-demand module loading runs /sbin/modprobe.
    c.symlink("/sbin/modprobe", "/bin/busybox");

    // Modules: every ip_vs module with its dependency closure, plus crc32c for libcrc32c.
    let moddir = format!("lib/modules/{version}");
    let dep = fs::read_to_string(tree.join(&moddir).join("modules.dep")).unwrap();
    let deps: std::collections::HashMap<&str, Vec<&str>> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m, d.split_whitespace().collect()))
        .collect();
    let mut want: Vec<&str> = deps
        .keys()
        .copied()
        .filter(|m| m.contains("/ipvs/") || m.ends_with("/crc32c_generic.ko"))
        .collect();
    let mut i = 0;
    while i < want.len() {
        for d in deps.get(want[i]).into_iter().flatten() {
            if !want.contains(d) {
                want.push(d);
            }
        }
        i += 1;
    }
    want.sort();
    let staging = cache.join("modroot");
    let _ = fs::remove_dir_all(&staging);
    for m in &want {
        let dst = staging.join(&moddir).join(m);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(tree.join(&moddir).join(m), dst).unwrap();
    }
    // modules.dep/alias for just these, so modprobe and on-demand loading work in the guest.
    run(Command::new("/bin/busybox")
        .args(["depmod", "-b"])
        .arg(&staging)
        .arg(version));
    let mut files = Vec::new();
    collect(&staging, &mut files);
    files.sort();
    for f in files {
        let rel = f
            .strip_prefix(&staging)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        c.file(
            &mut dirs,
            &format!("/{rel}"),
            0o100644,
            &fs::read(&f).unwrap(),
        );
    }
    fs::remove_dir_all(&staging).unwrap();

    // ipvsadm and the shared libraries it needs (paths as ldd reports them).
    c.file(
        &mut dirs,
        "/usr/sbin/ipvsadm",
        0o100755,
        &fs::read("/usr/sbin/ipvsadm").unwrap(),
    );
    let ldd = String::from_utf8(run(Command::new("ldd").arg("/usr/sbin/ipvsadm"))).unwrap();
    for l in ldd.lines() {
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let real = fs::canonicalize(path).unwrap();
        c.file(&mut dirs, path, 0o100755, &fs::read(real).unwrap());
    }
    let bytes = c.finish();
    fs::write(&out, &bytes).unwrap();
    bytes
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `ipvs-guest` linked statically (glibc, `+crt-static`). `cargo rustc` gives the flag to the
/// final link only, so the dependencies already built in this target dir are reused and the
/// extra cost is compiling and linking one small binary. The result is copied out at once: the
/// next `cargo build` puts the ordinary binary back at that path.
fn guest_binary(target: &Path, cache: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let started = Instant::now();
    run(Command::new(env!("CARGO"))
        .args([
            "rustc",
            "--release",
            "--quiet",
            "--bin",
            "ipvs-guest",
            "--manifest-path",
        ])
        .arg(&manifest)
        .args(["--", "-C", "target-feature=+crt-static"])
        .env("CARGO_TARGET_DIR", target)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit()));
    eprintln!("ipvs-guest static build: {:?}", started.elapsed());
    let out = cache.join("ipvs-guest");
    fs::copy(target.join("release/ipvs-guest"), &out).unwrap();
    let ldd = Command::new("ldd").arg(&out).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(!ldd.contains("=>"), "ipvs-guest is not static:\n{ldd}");
    out
}

/// The kernel refuses real servers without a unicast route to them (EINVAL; ipvsadm says
/// "address not unicast"), and the guest has no network: a default route via lo gives every
/// test address one.
fn guest_initramfs(guest: &Path) -> Vec<u8> {
    let mut c = Cpio::default();
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         ip link set lo up\n\
         ip route add default dev lo\n\
         ip -6 route add default dev lo\n\
         for m in {}; do modprobe $m || echo \"modprobe $m failed\" >/dev/ttyS1; done\n\
         /ipvs-guest >/dev/ttyS1 2>&1\n\
         poweroff -f\n",
        PRELOAD.join(" ")
    );
    c.entry("/init", 0o100755, init.as_bytes(), (0, 0));
    c.entry("/ipvs-guest", 0o100755, &fs::read(guest).unwrap(), (0, 0));
    c.finish()
}

#[test]
fn ipvs_in_a_debian_kernel() {
    let started = Instant::now();
    ensure_installed("/usr/bin/qemu-system-x86_64", &["qemu-system-x86"]);
    ensure_installed("/bin/busybox", &["busybox-static"]);
    ensure_installed("/usr/sbin/ipvsadm", &["ipvsadm"]);
    ensure_installed("/usr/bin/xz", &["xz-utils"]);
    let pkg = kernel_package();
    let cache = target_dir().join("ipvs-qemu").join(&pkg);
    fs::create_dir_all(&cache).unwrap();
    let (tree, version) = kernel_tree(&cache, &pkg);
    let kernel = vmlinux(&cache, &tree, &version);
    let mut initrd = base_initramfs(&cache, &tree, &version);
    let guest = guest_binary(&target_dir(), &cache);
    initrd.extend(guest_initramfs(&guest));
    let run_dir = cache.join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&run_dir).unwrap();
    let initrd_path = run_dir.join("initrd.cpio");
    fs::write(&initrd_path, initrd).unwrap();
    let console = run_dir.join("console.log");
    let results = run_dir.join("results.log");
    let prepared = started.elapsed();

    let boot = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-nic",
            "none",
            "-no-reboot",
            "-display",
            "none",
            "-kernel",
        ])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd_path)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(run_dir.join("qemu.stderr")).unwrap())
        .spawn()
        .expect("qemu-system-x86_64");
    let status = loop {
        if let Some(st) = qemu.try_wait().unwrap() {
            break Some(st);
        }
        if boot.elapsed() > BOOT_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = fs::read_to_string(&results).unwrap_or_default();
    let con = fs::read_to_string(&console).unwrap_or_default();
    let tail: String = con
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "prepare {prepared:?}, boot+suite {:?}\n{out}",
        boot.elapsed()
    );
    assert!(
        status.is_some(),
        "guest did not finish within {BOOT_TIMEOUT:?}; console tail:\n{tail}"
    );
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failures.is_empty(),
        "guest failures:\n{}",
        failures.join("\n").replace("\\n", "\n")
    );
    let done = out
        .lines()
        .find(|l| l.starts_with("DONE"))
        .unwrap_or_else(|| {
            panic!("guest suite did not finish; console tail:\n{tail}\nresults:\n{out}")
        });
    assert!(done.ends_with("fail=0"), "{done}");
    let passed: usize = done
        .split("pass=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(passed >= 12, "only {passed} guest checks ran:\n{out}");
    fs::remove_dir_all(&run_dir).unwrap();
}

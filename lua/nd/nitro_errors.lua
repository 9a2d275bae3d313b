-- nd.nitro_errors — the one knowledge base of nitro-cli error codes E00–E60 (reference/nitro.md), as data.
--
-- Every part of nitrodiag that names, explains or simulates a nitro-cli error reads it from here (the simulator's
-- stand-in prints `[ Exx ] <title>. …`, `nitrodiag explain` renders the entries, runbooks attach remediation to
-- their findings). Entry fields:
--   code        "E26"                       number   26 (also nitro-cli's exit status)
--   title       exact nitro-cli title (the first sentence of the `[ E26 ] …` line, without the final dot)
--   meaning     what it means, in plain words
--   causes      usual causes on real hosts (list of strings)
--   remediation concrete steps, commands included (list of strings)
--   doc_url     https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26
--   explain     what `nitro-cli explain --error-code E26` prints (nil when not known)
--   retired     true when current nitro-cli no longer raises it (E30–E33, E37, E52)
--   explain_unknown  true when `nitro-cli explain` answers "No such error code Exx" (E57–E59)
--   secondary   true for codes that normally only follow a root cause (E39 after a run-enclave failure)
--   related     other codes worth reading together
local M = {}

M.DOC_BASE = "https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html"
M.ALLOCATOR_YAML = "/etc/nitro_enclaves/allocator.yaml"

local RESTART_ALLOCATOR = "sudo systemctl stop nitro-enclaves-allocator.service; edit /etc/nitro_enclaves/allocator.yaml; "
  .. "sudo systemctl start nitro-enclaves-allocator.service && sudo systemctl enable nitro-enclaves-allocator.service"
local CHECK_ALLOCATOR = "cat /etc/nitro_enclaves/allocator.yaml; systemctl status nitro-enclaves-allocator.service; "
  .. "journalctl -u nitro-enclaves-allocator.service -n 50"
local DESCRIBE = "nitro-cli describe-enclaves"
local ERRLOG = "read the err log named in the message: sudo cat /var/log/nitro_enclaves/err<timestamp>.log "
  .. "(and tail -n 100 /var/log/nitro_enclaves/nitro_enclaves.log)"
local BACKTRACE = "re-run the failing command with BACKTRACE=1 to get the full backtrace"
local INTERNAL = "this is an internal nitro-cli failure: upgrade aws-nitro-enclaves-cli and report it with the err log "
  .. "at https://github.com/aws/aws-nitro-enclaves-cli/issues"

local E = {}

local function def(n, title, t)
  local code = string.format("E%02d", n)
  t.code, t.number, t.title = code, n, title
  t.doc_url = M.DOC_BASE .. "#" .. code
  t.causes = t.causes or {}
  t.remediation = t.remediation or {}
  t.related = t.related or {}
  t.retired = t.retired or false
  t.explain_unknown = t.explain_unknown or false
  t.secondary = t.secondary or false
  E[code] = t
end

def(0, "Unspecified error", {
  meaning = "A catch-all error: nitro-cli failed in a way it has no specific code for.",
  causes = { "an unexpected internal failure (often a bug or an unusual host state)" },
  remediation = { ERRLOG, BACKTRACE, INTERNAL },
  explain = "Unspecified error. This is used as a catch-all error and should not be used in the code.",
})
def(1, "Missing mandatory argument", {
  meaning = "A required option of the subcommand was not given (for run-enclave: --eif-path, --memory and --cpu-count or --cpu-ids).",
  causes = { "a script builds the command line from an empty variable", "a typo in an option name, so the mandatory one is missing" },
  remediation = { "give every mandatory option: nitro-cli run-enclave --eif-path app.eif --memory 2048 --cpu-count 2",
    "see the subcommand help: nitro-cli run-enclave --help" },
  explain = "Missing mandatory argument. Such error appears when the Nitro CLI is requested to perform an operation, but not all of the mandatory arguments were supplied.\n\tExample: `nitro-cli run-enclave --cpu-count 2 --eif-path /path/to/my/eif`. Note that in this case, the mandatory parameter `--memory` is missing a value.",
})
def(2, "Conflicting arguments", {
  meaning = "Two options that exclude each other were given together (e.g. --cpu-count and --cpu-ids, or --enclave-id and --all).",
  causes = { "both --cpu-count and --cpu-ids on run-enclave", "--config together with individual options" },
  remediation = { "keep only one of the two options named in the message" },
  explain = "CLI conflicting arguments. Such error appears when the Nitro CLI is supplied two contradicting arguments at the same time, such as `--cpu-count` and `--cpu-ids`.\nIn this case, only one of the parameters should be supplied.",
})
def(3, "Invalid argument provided", {
  meaning = "An option value has the wrong type or a forbidden value (not an integer, or an enclave CID that is reserved).",
  causes = { "a non-numeric --memory/--cpu-count value", "--enclave-cid 1 or 2 (well-known CIDs), 3 (the parent's CID) or a value above 32 bits (0 or none means automatic) — src/common/commands_parser.rs",
    "(a CID already used by a running enclave is not E03: the driver refuses it at enclave creation, E29)" },
  remediation = { "pass plain integers: --memory 2048 --cpu-count 2",
    "omit --enclave-cid (automatic) or use a value >= 4 that fits in 32 bits" },
  explain = "Invalid argument provided. Such error appears when the type of at least one of the arguments provided to the Nitro CLI does not match the expected type of that parameter.\n\tExample: `nitro-cli run-enclave --cpu-count 1z --memory 80 --eif-path /path/to/my/eif`. In this case, `cpu-count` is not a valid integer value.",
})
def(4, "Socket pair creation failure", {
  meaning = "nitro-cli could not create the socket pair it uses to talk to the enclave process.",
  causes = { "the process hit its file-descriptor limit", "the host is out of memory" },
  remediation = { "check ulimit -n and free -m", ERRLOG, INTERNAL },
  explain = "Socket pair creation failure. Such error apears when the Nitro CLI process attempts to open a stream pair in order to send a command to the enclave process, but the stream initialization fails.",
})
def(5, "Process spawn failure", {
  meaning = "nitro-cli could not fork the enclave process that owns a new enclave (run-enclave).",
  causes = { "process limit reached (ulimit -u, pids cgroup)", "host out of memory" },
  remediation = { "check ulimit -u, free -m and dmesg | tail", ERRLOG },
  explain = "Process spawn failure. Such error appears when the main Nitro CLI process failed to spawn the enclave process, in order to complete a `run-enclave` command.",
})
def(6, "Daemonize process failure", {
  meaning = "The newly spawned enclave process could not detach (daemonize).",
  causes = { "resource limits or a restricted environment (containers, seccomp)" },
  remediation = { "run nitro-cli directly on the parent instance, not inside a restricted container", ERRLOG },
  explain = "Daemonize process failure. Such error appears when the system fails to daemonize the newly spawned enclave process.",
})
def(7, "Read from disk failure", {
  meaning = "nitro-cli could not read the enclave sockets directory (/run/nitro_enclaves/) to find running enclaves.",
  causes = { "/run/nitro_enclaves missing (fresh boot without the nitro-cli setup)", "wrong permissions: the user is not in group ne" },
  remediation = { "ls -ld /run/nitro_enclaves; id (the user must be in group ne: sudo usermod -aG ne $USER, then log in again)",
    "reinstall/configure aws-nitro-enclaves-cli so the directory is created" },
  explain = "Read from disk failure. Such error appears when the Nitro CLI process fails to read the content of the enclave sockets directory (usually '/run/nitro_enclaves/') in order to perform a `describe-enclave` operation. Check that the directory exists and it has proper permissions, or run the Nitro Enclaves configuration script in order to (re)configure the environment.",
})
def(8, "Unusable connection error", {
  meaning = "nitro-cli tried to use a connection to an enclave process that no longer exists or was closed.",
  causes = { "the enclave (and its process) exited between listing and connecting", "a stale socket left in /run/nitro_enclaves" },
  remediation = { DESCRIBE .. " to see what still runs", "remove stale sockets only when no enclave runs: ls /run/nitro_enclaves" },
  explain = "Unusable connection error. Such error appears when the Nitro CLI process attempts to open a connection to a non-existing or previously closed enclave descriptor",
})
def(9, "Socket close error", {
  meaning = "Closing a communication channel failed.",
  causes = { "the peer vanished abruptly" },
  remediation = { ERRLOG },
  explain = "Socket close error. Such error appears when the system fails to successfully close a communication channel.",
})
def(10, "Socket connect set timeout error", {
  meaning = "Setting a timeout on a socket failed, usually while connecting to an enclave console.",
  causes = { "the enclave stopped while the console was being opened" },
  remediation = { DESCRIBE .. " to check the enclave still runs, then retry nitro-cli console" },
  explain = "Socket connect set timeout error. Such error appears when the system fails to configure a specific timeout for a given socket. May arise when trying to connect to an enclave's console.",
})
def(11, "Socket error", {
  meaning = "Any other socket operation failed.",
  causes = { "the enclave process or the enclave went away mid-operation", "vsock support missing in the parent kernel (vhost_vsock / vsock modules)" },
  remediation = { "lsmod | grep vsock", ERRLOG, BACKTRACE },
  explain = "Socket error. This is used as an error for catching any other socket operation errors not covered by previous custom errors.",
})
def(12, "Epoll error", {
  meaning = "Registering an enclave descriptor with epoll failed.",
  causes = { "file-descriptor limits", "the descriptor was already closed" },
  remediation = { "ulimit -n", ERRLOG },
  explain = "Epoll error. Such error appears, for instance, when the system fails to register a specific enclave descriptor with epoll in order to monitor events for it.",
})
def(13, "Inotify error", {
  meaning = "Setting up an inotify watch on the enclave sockets failed.",
  causes = { "inotify watch limit reached (fs.inotify.max_user_watches / max_user_instances)" },
  remediation = { "sysctl fs.inotify.max_user_instances fs.inotify.max_user_watches; raise them with sysctl -w if exhausted" },
  explain = "Inotify error. Such error appears when the system fails to configure a socket for monitorization.",
})
def(14, "Invalid command", {
  meaning = "The enclave process received a command it does not know.",
  causes = { "nitro-cli and a running enclave process come from different versions (upgrade while enclaves ran)" },
  remediation = { "terminate old enclaves after upgrading nitro-cli: nitro-cli terminate-enclave --all, then run them again" },
  explain = "Invalid command. Such error appears when an unknown command and / or unknown arguments are sent through a socket.",
})
def(15, "Lock acquire failure", {
  meaning = "An internal lock could not be taken.",
  causes = { "an internal failure (poisoned lock after a crash of another thread)" },
  remediation = { ERRLOG, INTERNAL },
  explain = "Lock acquire failure. Such error appears when the system fails to obtain the lock for an object with concurrent access, such as a structure containing information about a running enclave.",
})
def(16, "Thread join failure", {
  meaning = "An internal thread could not be joined.",
  causes = { "an internal failure in a helper thread" },
  remediation = { ERRLOG, INTERNAL },
  explain = "Thread join failure. Such error appears when the system fails to successfully join a thread, after it finished executing.",
})
def(17, "Serde error", {
  meaning = "Serialising or deserialising a command/reply (JSON) failed.",
  causes = { "mixed nitro-cli versions", "a malformed --config JSON file for run-enclave" },
  remediation = { "validate the run-enclave --config file: python3 -m json.tool file.json", "use one nitro-cli version for all enclaves" },
  explain = "Serde error. Such error appears when serializing / deserializing a command or response fails.",
})
def(18, "File permissions error", {
  meaning = "nitro-cli could not change the permissions of its log file because another user owns it.",
  causes = { "nitro-cli was first run as root, so /var/log/nitro_enclaves/nitro_enclaves.log belongs to root" },
  remediation = { "ls -l /var/log/nitro_enclaves/", "sudo chown root:ne /var/log/nitro_enclaves/nitro_enclaves.log && sudo chmod 664 /var/log/nitro_enclaves/nitro_enclaves.log" },
  explain = "File permissions error. Such error appears when a user other than the owner of the logging file (usually '/var/log/nitro_enclaves/nitro_enclaves.log') attempts to change the file permissions",
})
def(19, "File operation failure", {
  meaning = "A file operation failed; the message names the file and the operation (`File: '<path>', failing operation: '<Open|Read|…>'`).",
  causes = { "/dev/nitro_enclaves missing: the nitro_enclaves driver is not loaded, or the instance type / launch did not enable enclaves",
    "/dev/nitro_enclaves not accessible: the user is not in group ne (log out and in after usermod)",
    "/sys/module/nitro_enclaves/parameters/ne_cpus unreadable: driver missing",
    "the EIF path is wrong or unreadable", "the log directory /var/log/nitro_enclaves is not writable" },
  remediation = { "ls -l /dev/nitro_enclaves; lsmod | grep nitro_enclaves (sudo modprobe nitro_enclaves)",
    "id; sudo usermod -aG ne $USER and log in again",
    "check the instance was launched with enclaves enabled: aws ec2 describe-instances --query 'Reservations[].Instances[].EnclaveOptions'",
    "ls -l <the file in the message>" },
  related = { "E18" },
  explain = "File operation failure. Such error appears when the system fails to perform the requested file operations, such as opening the EIF file when launching an enclave, or seeking to a specific offset in the EIF file, or writing to the log file.",
})
def(20, "Invalid CPU configuration", {
  meaning = "The requested CPUs are not a valid set: the same CPU ID given twice in --cpu-ids, or a CPU count that does not fit the pool's cores.",
  causes = { "duplicate IDs in --cpu-ids", "cpu_count/--cpu-count not a multiple of the threads per core (full cores are required)" },
  remediation = { "list each CPU once: --cpu-ids 1 3", "use an even --cpu-count on instances with 2 threads per core (lscpu | grep 'Thread(s) per core')" },
  related = { "E21", "E22" },
  explain = "Invalid CPU configuration. Such error appears when the user supplies the same CPU ID multiple times.\n\tExample: `nitro-cli run-enclave --cpu-ids 1 1 --memory 80 --eif-path /path/to/my/eif`. In this case, CPU ID `1` has been selected twice.",
})
def(21, "No such CPU available in the pool", {
  meaning = "A CPU requested with --cpu-ids is not in the enclave CPU pool the allocator set up (or is held by another enclave).",
  causes = { "--cpu-ids names a CPU outside cpu_pool in allocator.yaml", "the allocator service did not run after a reboot or edit",
    "(nitro-cli compares --cpu-ids with the pool file only; a CPU held by a running enclave is refused later by the driver: E29)" },
  remediation = { "cat /sys/module/nitro_enclaves/parameters/ne_cpus (the pool)",
    "add the CPU to cpu_pool: " .. RESTART_ALLOCATOR },
  related = { "E22", "E20" },
  explain = "No such CPU available in the pool. Such error appears when the user requests to run an enclave with at least one CPU ID which does not exist in the CPU pool.\n\tExample: (configured CPU pool: [1,9]) `nitro-cli run-enclave --cpu-ids 1 2 --memory 80 --eif-path /path/to/my/eif`. In this case, CPU 2 is not in the configured CPU pool.",
})
def(22, "Insufficient CPUs available in the pool", {
  meaning = "More CPUs were requested than the enclave CPU pool has free.",
  causes = { "--cpu-count larger than cpu_count in allocator.yaml (or the pool a Kubernetes device plugin configured)",
    "the allocator service failed (pool empty) while reporting success",
    "(nitro-cli compares the request with the pool file only; CPUs held by a stale enclave give E29 \"no CPUs are available in the pool\", not E22)" },
  remediation = { "cat /sys/module/nitro_enclaves/parameters/ne_cpus", "raise cpu_count: " .. RESTART_ALLOCATOR, CHECK_ALLOCATOR },
  related = { "E21", "E29", "E39" },
  explain = "Insufficient CPUs available in the pool. Such error appears when the user requests to run an enclave with more CPUs that available in the CPU pool.\n\tExample: (configured CPU pool: [1,9]) `nitro-cli run-enclave --cpu-count 4 --memory 80 --eif-path /path/to/my/eif`. In this case, the user requested 4 CPUs, but the CPU pool contains only 2.",
})
def(23, "Malformed CPU ID error", {
  meaning = "A CPU list read from the system (lscpu / the ne_cpus parameter) is malformed.",
  causes = { "a hand-written ne_cpus value or cpu_pool with bad syntax" },
  remediation = { "cat /sys/module/nitro_enclaves/parameters/ne_cpus; lscpu", "fix cpu_pool (e.g. 2,3,6-9) and restart the allocator: " .. RESTART_ALLOCATOR },
  explain = "Malformed CPU ID error. Such error appears when a `lscpu` line is malformed and reports an invalid online CPUs list.",
})
def(24, "CPU error", {
  meaning = "A CPU interval is invalid (for instance 0-3-7).",
  causes = { "a malformed cpu_pool range in allocator.yaml" },
  remediation = { "write ranges as a-b with a <= b, separated by commas: cpu_pool: 2,3,6-9", RESTART_ALLOCATOR },
  explain = "CPU error. Such error appears when a CPU line interval is invalid (as in 0-3-7)",
})
def(25, "No such hugepage flag error", {
  meaning = "The enclave process tried a hugepage size the kernel does not know.",
  causes = { "an unusual kernel without 2 MiB / 1 GiB hugepage support" },
  remediation = { "ls /sys/kernel/mm/hugepages/", "use a supported kernel (Amazon Linux 2/2023)" },
  explain = "No such hugepage flag error. Such error appears when the enclave process attempts to use an invalid hugepage size (size other than the known hugepage sizes) for initializing the enclave memory.",
})
def(26, "Insufficient memory requested", {
  meaning = "--memory is too small for the EIF: run-enclave needs at least 4 × the EIF file size, reported as ceil(EIF size / 1 MiB) × 4 MiB. It is checked before any memory is allocated.",
  causes = { "a --memory value copied from a tutorial while the EIF grew (a bigger Docker image)",
    "--memory 0 or a missing unit mistake (the value is MiB)" },
  remediation = { "run with --memory at least the minimum named in the message (nitrodiag eif <file> prints it)",
    "make sure the allocator reserves that much too (memory_mib in /etc/nitro_enclaves/allocator.yaml), otherwise E27 follows",
    "or shrink the image: multi-stage Docker build, smaller base image, fewer files" },
  related = { "E27", "E39" },
  explain = "Insufficient memory requested. Such error appears when the user requests to launch an enclave with not enough memory. The enclave memory should be at least equal to the size of the EIF file used for launching the enclave.\n\tExample: (EIF file size: 11MB) `nitro-cli run-enclave --cpu-count 2 --memory 5 --eif-path /path/to/my/eif`. In this case, the user requested to run an enclave with only 5MB of memory, whereas the EIF file alone requires 11MB.",
})
def(27, "Insufficient memory available", {
  meaning = "--memory is more than the hugepage memory the allocator service reserved for enclaves (memory_mib), minus what running enclaves use.",
  causes = { "memory_mib in allocator.yaml smaller than --memory", "the allocator service was not restarted after editing allocator.yaml",
    "another enclave (maybe stale) holds part of the reserved memory", "the allocator could not reserve hugepages (fragmented memory) but reported success" },
  remediation = { "raise memory_mib to at least --memory: " .. RESTART_ALLOCATOR, CHECK_ALLOCATOR,
    "grep -i huge /proc/meminfo; cat /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages",
    DESCRIBE .. " (memory held by other enclaves)", "or lower --memory (not below the E26 minimum)" },
  related = { "E26", "E35", "E39" },
  explain = "Insufficient memory available. Such error appears when the user requests to launch an enclave with more memory than available. The enclave memory should be at most equal to the size of the configured hugepage memory.\n\tExample: (previously configured 80MB of hugepage memory) `nitro-cli run-enclave --cpu-count 2 --memory 100 --eif-path /path/to/my/eif`. In this case, the user requested to run an enclave with 100MB of memory, whereas the system has only 80MB available for enclaves. As a solution, (re)configure the Nitro Enclaves environment, specifying a higher value for the available memory.",
})
def(28, "Invalid enclave descriptor", {
  meaning = "The driver's NE_CREATE_VM ioctl failed: no enclave slot could be created.",
  causes = { "the maximum number of enclaves for the instance is reached", "driver/hypervisor state problem after a crash" },
  remediation = { DESCRIBE .. "; terminate enclaves you do not need", "dmesg | grep -i nitro", "reboot the instance if the driver is wedged" },
  explain = "Invalid enclave descriptor. Such error appears when the NE_CREATE_VM ioctl returns with an error.",
})
def(29, "Ioctl failure", {
  meaning = "A Nitro Enclaves driver ioctl failed. nitro-cli turns the driver's code into an English sub-action in the err log (e.g. \"The enclave cannot be created because no CPUs are available in the pool\"); NE_ERR_* names never appear in its output (src/enclave_proc/resource_manager.rs, do_ioctl).",
  causes = { "before `Start allocating memory...` (Create VM): no CPU of the pool is free — a running or stale enclave holds it, or the previous enclave is still being torn down (transient)",
    "a CPU given with --cpu-ids is held by a running enclave", "an enclave CID already in use",
    "\"The maximum number of memory regions per enclave has been reached\": a large enclave on 2 MiB hugepages",
    "memory regions on another NUMA node than the CPUs, or not backed by hugepages" },
  remediation = { ERRLOG .. " — its last sub-action is the driver's reason in English",
    DESCRIBE .. "; nitro-cli terminate-enclave --enclave-id <id> for an enclave you do not need; if none is listed, wait a few seconds and retry",
    "dmesg | grep -i nitro_enclaves", CHECK_ALLOCATOR },
  related = { "E22", "E39", "E30", "E31", "E32", "E33" },
  explain = "Ioctl failure. Such error is used as a general ioctl error and appears whenever an ioctl fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
})
def(30, "Ioctl image get load info failure", {
  meaning = "Getting the image load info from the driver failed. No longer raised: current nitro-cli reports E29.",
  retired = true, related = { "E29" },
  remediation = { "read it as E29 (see nitrodiag explain E29); upgrade nitro-cli" },
  explain = "Ioctl image get load info failure. Such error appears when the ioctl used for getting the memory load information fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
})
def(31, "Ioctl set memory region failure", {
  meaning = "Adding a memory region to the enclave failed. No longer raised: current nitro-cli reports E29.",
  retired = true, related = { "E29" },
  remediation = { "read it as E29 (see nitrodiag explain E29); check hugepages: grep -i huge /proc/meminfo" },
  explain = "Ioctl set memory region failure. Such error appears when the ioctl used for setting a given memory region fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
})
def(32, "Ioctl add vCPU failure", {
  meaning = "Adding a vCPU to the enclave failed. No longer raised: current nitro-cli reports E29.",
  retired = true, related = { "E29", "E22" },
  remediation = { "read it as E29; check the CPU pool: cat /sys/module/nitro_enclaves/parameters/ne_cpus" },
  explain = "Ioctl add vCPU failure. Such error appears when the ioctl used for adding a vCPU fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
})
def(33, "Ioctl start enclave failure", {
  meaning = "Starting the enclave failed. No longer raised: current nitro-cli reports E29.",
  retired = true, related = { "E29" },
  remediation = { "read it as E29 (see nitrodiag explain E29)" },
  explain = "Ioctl start enclave failure. Such error appears when the ioctl used for starting an enclave fails. In this case, the error backtrace provides details information on what specifically failed during the ioctl.",
})
def(34, "Memory overflow", {
  meaning = "Loading the EIF into the enclave memory regions would exceed the platform's maximum address.",
  causes = { "a very large EIF or --memory close to the platform limit" },
  remediation = { "reduce the EIF size or --memory", "nitrodiag eif <file> to see the section sizes" },
  explain = "Memory overflow. Such error may appear during loading the EIF in the memory regions which will be conceded to the future enclave, if the regions offset plus the EIF file size exceeds the maximum address of the target platform.",
})
def(35, "EIF file parsing error", {
  meaning = "Reading a section of the EIF into enclave memory failed. Often the hugepages were not actually available; sometimes the EIF is damaged.",
  causes = { "the allocator did not really reserve the hugepages (it can report success after failing)", "a truncated or corrupted EIF (incomplete copy)",
    "an EIF built for another architecture" },
  remediation = { "grep -i huge /proc/meminfo; " .. CHECK_ALLOCATOR, "validate the image: nitrodiag eif <file> (header, sections, CRC)",
    "restart the allocator: sudo systemctl restart nitro-enclaves-allocator.service" },
  related = { "E27" },
  explain = "EIF file parsing error. Such errors appear when attempting to fill a memory region with a section of the EIF file, but reading the entire section fails. This might indicate that the required hugepages are not available.",
})
def(36, "Enclave boot failure", {
  meaning = "The enclave did not send its ready signal (the vsock heartbeat on CID 3 port 9000) in time.",
  causes = { "VsockTimeoutError: the enclave kernel/init did not boot (bad EIF, too little memory)",
    "a heartbeat bind error: another run-enclave is starting at the same time and holds port 9000",
    "an EIF signed with an expired signing certificate — only before nitro-cli 1.2.2; since then it is E59 (#243)",
    "a custom EIF without the AWS init (no heartbeat)" },
  remediation = { "start enclaves one at a time (serialize concurrent run-enclave)", "run with --debug-mode --attach-console to watch the boot",
    "rebuild the EIF with nitro-cli build-enclave; check the signing certificate dates (openssl x509 -noout -dates -in cert.pem)",
    "give more memory than the E26 minimum" },
  related = { "E39", "E26" },
  explain = "Enclave boot failure. Such error appears when attempting to receive the `ready` signal from a freshly booted enclave. It arises in several contexts, for instance, when the enclave is booted from an invalid EIF file and the enclave process immediately exits, failing to submit the `ready` signal. In this case, the error backtrace provides detailed information on what specifically failed during the enclave boot process.",
})
def(37, "Enclave event wait error", {
  meaning = "Monitoring an enclave descriptor for events failed. No longer raised by current nitro-cli.",
  retired = true,
  remediation = { "upgrade nitro-cli; " .. ERRLOG },
  explain = "Enclave event wait error. Such error appears when monitoring an enclave descriptor for events fails.",
})
def(38, "Enclave process command not executed error", {
  meaning = "At least one enclave process did not answer a command (describe/terminate).",
  causes = { "an enclave process that hangs or died", "a stale socket in /run/nitro_enclaves" },
  remediation = { DESCRIBE, "ps -ef | grep nitro-cli (enclave processes)", ERRLOG },
  related = { "E39" },
  explain = "Enclave process command not executed error. Such error appears when at least one enclave fails to provide the description information.",
})
def(39, "Enclave process connection failure", {
  meaning = "nitro-cli could not get an answer from at least one enclave process. After a run-enclave failure it only says the enclave process exited: the block BEFORE it is the real cause.",
  causes = { "the enclave process failed first (E26, E27, E29, E36 …) and exited — read the preceding error",
    "a stale enclave process socket", "stale enclaves holding CPUs (\"no CPUs available\")" },
  remediation = { "fix the error printed before `Failed connections: N`", DESCRIBE, "nitro-cli terminate-enclave --all if stale enclaves remain" },
  secondary = true,
  related = { "E26", "E27", "E36", "E29" },
  explain = "Enclave process connection failure. Such error appears when the enclave manager fails to connect to at least one enclave process for retrieving the description information.",
})
def(40, "Socket path not found", {
  meaning = "No enclave process socket exists for the given enclave ID.",
  causes = { "a wrong or old --enclave-id", "the enclave already terminated" },
  remediation = { DESCRIBE .. " and copy the EnclaveID exactly" },
  explain = "Socket path not found. Such error appears when the Nitro CLI process fails to build the corresponding socket path starting from a given enclave ID.",
})
def(41, "Enclave process send reply failure", {
  meaning = "The enclave process could not send its status back to nitro-cli.",
  causes = { "the calling nitro-cli was killed or timed out" },
  remediation = { DESCRIBE, ERRLOG },
  explain = "Enclave process send reply failure. Such error appears when the enclave process fails to submit the status code to the Nitro CLI process after performing a run / describe / terminate command.",
})
def(42, "Enclave mmap error", {
  meaning = "Allocating (mmap) the enclave memory failed.",
  causes = { "hugepages not reserved or fragmented", "host memory pressure" },
  remediation = { "grep -i huge /proc/meminfo", CHECK_ALLOCATOR },
  related = { "E27", "E35" },
  explain = "Enclave mmap error. Such error appears when allocating the enclave memory fails.",
})
def(43, "Enclave munmap error", {
  meaning = "Releasing (munmap) the enclave memory failed.",
  causes = { "an internal failure during terminate" },
  remediation = { ERRLOG, INTERNAL },
  explain = "Enclave munmap error. Such error appears when unmapping the enclave memory fails.",
})
def(44, "Enclave console connection failure", {
  meaning = "nitro-cli console could not connect to the enclave console (vsock CID 0, port enclave CID + 10000).",
  causes = { "the enclave was not started with --debug-mode (the console only exists in debug mode)",
    "the enclave already exited (an app that ends at once reboots the enclave)" },
  remediation = { "run it in debug mode: nitro-cli run-enclave --debug-mode … then nitro-cli console --enclave-id <id>",
    "or attach at start: nitro-cli run-enclave --debug-mode --attach-console …",
    "note: debug-mode enclaves attest with all-zero PCRs, so KMS policies on PCRs fail in debug mode" },
  explain = "Enclave console connection failure. Such error appears when the Nitro CLI process fails to establish a connection to a running enclave's console.",
})
def(45, "Enclave console read error", {
  meaning = "Reading from the enclave console failed.",
  causes = { "the enclave stopped or rebooted while the console was attached" },
  remediation = { DESCRIBE .. " — if the enclave is gone, its application exited (see the last console lines)" },
  explain = "Enclave console read error. Such error appears when reading from a running enclave's console fails.",
})
def(46, "Enclave console write output error", {
  meaning = "Writing console output to nitro-cli's output stream failed.",
  causes = { "stdout closed (a pipe into head, a terminated ssh session)" },
  remediation = { "redirect the console to a file: nitro-cli console --enclave-id <id> > console.log" },
  explain = "Enclave console write output error. Such error appears when writing the information retrieved from a running enclave's console (to a given stream) fails.",
})
def(47, "Integer parsing error", {
  meaning = "The enclave CID could not be parsed while connecting to the console.",
  causes = { "a corrupted enclave process reply" },
  remediation = { DESCRIBE, ERRLOG },
  explain = "Integer parsing error. Such error appears when trying to connect to a running enclave's console, but the enclave CID cannot be parsed correctly.",
})
def(48, "EIF building error", {
  meaning = "build-enclave could not turn the Docker image into an EIF (linuxkit/initramfs step).",
  causes = { "missing blobs (kernel, init, nsm.ko) from aws-nitro-enclaves-cli-devel", "the disk is full", "linuxkit failed on the image layers" },
  remediation = { "sudo yum install aws-nitro-enclaves-cli-devel (or dnf on AL2023); ls /usr/share/nitro_enclaves/blobs/",
    "df -h; " .. BACKTRACE },
  related = { "E49", "E50" },
  explain = "EIF building error. Such error appears when trying to build an EIF file. In this case, the error backtrace provides detailed information on the failure reason.",
})
def(49, "Docker image build error", {
  meaning = "build-enclave could not build the Docker image from --docker-dir.",
  causes = { "the Dockerfile fails to build", "the docker daemon is not running or the user is not in group docker" },
  remediation = { "docker build <docker-dir> to see the real error", "sudo systemctl start docker; sudo usermod -aG docker $USER" },
  related = { "E48", "E50" },
  explain = "Docker image build error. Such error appears when trying to build and EIF file, but building the corresponding docker image fails. In this case, the error backtrace provides detailed information on the failure reason.",
})
def(50, "Docker image pull error", {
  meaning = "build-enclave could not find or pull --docker-uri.",
  causes = { "the image is not local and cannot be pulled (no registry login, no network, typo in the tag)" },
  remediation = { "docker images | grep <name>; docker pull <uri>", "log in to the registry (aws ecr get-login-password | docker login …)" },
  related = { "E49" },
  explain = "Docker image pull error. Such error appears when trying to build an EIF file, but pulling the corresponding docker image fails. In this case, the error backtrace provides detailed informatino on the failure reason.",
})
def(51, "Artifacts path environment variable not set", {
  meaning = "build-enclave needs a folder for its artifacts and neither HOME nor NITRO_CLI_ARTIFACTS is set.",
  causes = { "running from systemd, cron, a CI runner or sudo -i variants without HOME" },
  remediation = { "export NITRO_CLI_ARTIFACTS=/tmp/nitro-artifacts (or set HOME) before nitro-cli build-enclave" },
  explain = "Artifacts path environment variable not set. Such error appears when trying to build an EIF file, but the artifacts path environment variable is not set.",
})
def(52, "Blobs path environment variable not set", {
  meaning = "The blobs path was not set. No longer raised by current nitro-cli.",
  retired = true,
  remediation = { "upgrade nitro-cli; the blobs live in /usr/share/nitro_enclaves/blobs/ (package aws-nitro-enclaves-cli-devel)" },
  explain = "Blobs path environment variable not set. Such error appears when trying to build an EIF file, but the blobs path environment variable is not set.",
})
def(53, "Clock skew error", {
  meaning = "Measuring time between console reads failed (the clock went backwards).",
  causes = { "a clock jump on the parent instance (NTP step)" },
  remediation = { "chronyc tracking; re-attach the console" },
  explain = "Clock skew error. Such error appears when continuously reading from a running enclave's console, but measuring the time elapsed between consecutive reads failed.",
})
def(54, "Signal masking error", {
  meaning = "Masking signals before creating the enclave process failed.",
  causes = { "an internal failure" }, remediation = { ERRLOG, INTERNAL },
  explain = "Signal masking error. Such error appears if attempting to mask specific signals before creating an enclave process fails.",
})
def(55, "Signal unmasking error", {
  meaning = "Unmasking signals after creating the enclave process failed.",
  causes = { "an internal failure" }, remediation = { ERRLOG, INTERNAL },
  explain = "Signal unmasking error. Such error appears if attempting to unmask specific signals after creating an enclave process fails.",
})
def(56, "Logger error", {
  meaning = "The logging system could not start (the log file /var/log/nitro_enclaves/nitro_enclaves.log).",
  causes = { "/var/log/nitro_enclaves missing or not writable by the user (group ne)", "NITRO_CLI_LOGS_PATH points to a bad place" },
  remediation = { "ls -ld /var/log/nitro_enclaves; id", "sudo mkdir -p /var/log/nitro_enclaves && sudo chown root:ne /var/log/nitro_enclaves && sudo chmod 775 /var/log/nitro_enclaves" },
  related = { "E18", "E19" },
  explain = "Logger error. Such error appears when attempting to initialize the underlying logging system fails.",
})
def(57, "Hasher error", {
  meaning = "Computing the image measurements (SHA-384 hasher) failed with an I/O error.",
  causes = { "an I/O error reading the EIF or image while hashing" },
  remediation = { "check the file and the disk (dmesg for I/O errors); nitrodiag eif <file> recomputes the PCRs" },
  explain_unknown = true,
})
def(58, "Naming error", {
  meaning = "An enclave operation used an enclave name that is invalid or matches no (or several) enclaves.",
  causes = { "a typo in --enclave-name", "two enclaves with the same name" },
  remediation = { DESCRIBE .. " to see EnclaveName values; use --enclave-id instead" },
  explain_unknown = true,
})
def(59, "EIF signature checker error", {
  meaning = "Checking the EIF signature failed (describe-eif / run-enclave on a signed EIF).",
  causes = { "the signing certificate has expired or is not yet valid (run-enclave: \"Invalid signing certificate\", nitro-cli ≥ 1.2.2; src/enclave_proc/commands.rs)",
    "a corrupted signature section", "a certificate/key mismatch when the EIF was signed" },
  remediation = { "nitrodiag eif <file> (shows the signature section and PCR8); openssl x509 -noout -dates -in cert.pem",
    "re-sign with a valid certificate: nitro-cli build-enclave … --signing-certificate cert.pem --private-key key.pem" },
  explain_unknown = true,
})
def(60, "Signing error", {
  meaning = "Signing the EIF during build-enclave failed.",
  causes = { "unreadable or mismatched --signing-certificate / --private-key", "an unsupported key type" },
  remediation = { "openssl x509 -noout -text -in cert.pem; openssl pkey -in key.pem -noout", "use an EC P-384 key matching the certificate" },
  explain = "Signing error. Such error appears if incorrect key or certificate paths are provided, or when AWS credenrials need to be refreshed to use a KMS key.",
})

-- What nitro-cli prints after "[ Exx ] " (get_detailed_info in src/common/document_errors.rs, v1.5.0 = 1.4.2):
-- `{}` are filled in order from the failure's additional info, "MISSING_INFO" when a value is missing. E19 adds the
-- `_2` line only with two values; E26 uses `_2` (memory 0) when it has fewer than three. The texts differ from the
-- explain texts (E04 "attempts to open … but", E24 "for instance", E57–E60 have no explain text but a block text).
-- tests/lua/nitro_source_spec.lua compares every entry with tests/fixtures/nitro-cli-source/strings.lua.
M.DETAILED = {
  E00 = "Unspecified error. This is used as a catch-all error and should not be used in the code.",
  E01 = "Missing mandatory argument. User did not provide the `{}` argument.",
  E02 = "Conflicting arguments. User provided both `{}` and `{}`.",
  E03 = "Invalid argument provided. The parameter `{}` is not a valid integer (`{}`)",
  E04 = "Socket pair creation failure. Such error appears when the Nitro CLI process attempts to open a stream pair in order to send a command to the enclave process but the stream initialization fails.",
  E05 = "Process spawn failure. Such error appears when the main Nitro CLI process fails to spawn the enclave process, in order to complete a `run-enclave` command.",
  E06 = "Daemonize process failure. Such error appears when the system fails to daemonize a newly spawned enclave process.",
  E07 = "Read from disk failure. Such error appears when the Nitro CLI process fails to read the content of the enclave sockets directory (usually '/run/nitro_enclaves/') in order to perform a `describe-enclave` operation. Check that the directory exists and it has proper permissions, or run the Nitro Enclaves configuration script in order to (re)configure the environment.",
  E08 = "Unusable connection error. Such error appears when the Nitro CLI process attempts to open a connection to a non-existing or previously closed enclave descriptor",
  E09 = "Socket close error. Such error appears when the system fails to successfully close a communication channel.",
  E10 = "Socket connect set timeout error. Such error appears when the system fails to configure a specific timeout for a given socket. May arise when trying to connect to an enclave's console.",
  E11 = "Socket error. This is used as an error for catching any other socket operation errors not covered by previous custom errors.",
  E12 = "Epoll error. Such error appears, for instance, when the system fails to register a specific enclave descriptor with epoll in order to monitor events for it.",
  E13 = "Inotify error. Such error appears when the system fails to configure a socket for monitorization.",
  E14 = "Invalid command. Such error appears when an unknown command and / or unknown arguments are sent through a socket.",
  E15 = "Lock acquire failure. Such error appears when the system fails to obtain the lock for an object with concurrent access, such as a structure containing information about a running enclave.",
  E16 = "Thread join failure. Such error appears when the system fails to successfully join a thread, after it finished executing.",
  E17 = "Serde error. Such error appears when serializing / deserializing a command or response fails.",
  E18 = "File permissions error. Such error appears when a user other than the owner of the logging file (usually '/var/log/nitro_enclaves/nitro_enclaves.log') attempts to change the file permissions",
  E19 = "File operation failure. Such error appears when the system fails to perform the requested file operations, such as opening the EIF file when launching an enclave, or seeking to a specific offset in the EIF file, or writing to the log file.",
  E19_2 = "\nFile: '{}', failing operation: '{}'.",
  E20 = "Invalid CPU configuration. User provided `{}` contains same CPU(s) (CPU(s) {}) multiple times.",
  E21 = "No such CPU available in the pool. User provided `{}` contains CPU {}, which is not available in the pool.\nYou can add a specific CPU to the CPU pool by editing the `cpu_pool` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.",
  E22 = "Insufficient CPUs available in the pool. User provided `{}` is {}, which is more than the configured CPU pool size.\nYou can increase the CPU pool size by editing the `cpu_count` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.",
  E23 = "Malformed CPU ID error. Such error appears when a `lscpu` line is malformed and reports an invalid online CPUs list.",
  E24 = "CPU error. Such error appears when a CPU line interval is invalid (for instance, 0-3-7)",
  E25 = "No such hugepage flag error. Such error appears when the enclave process attempts to use an invalid hugepage size (size other than the known hugepage sizes) for initializing the enclave memory.",
  E26 = "Insufficient memory requested. User provided `{}` is {} MB, but based on the EIF file size, the minimum memory should be {} MB",
  E26_2 = "Insufficient memory requested. User provided `{}` is {} MB, and memory should be greater than 0 MB.",
  E27 = "Insufficient memory available. User provided `{}` is {} MB, which is more than the available hugepage memory.\nYou can increase the available memory by editing the `memory_mib` value from '/etc/nitro_enclaves/allocator.yaml' and then restart the nitro-enclaves-allocator.service.",
  E28 = "Invalid enclave descriptor. Such error appears when the NE_CREATE_VM ioctl returns with an error.",
  E29 = "Ioctl failure. Such error is used as a general ioctl error and appears whenever an ioctl fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
  E30 = "Ioctl image get load info failure. Such error appears when the ioctl used for getting the memory load information fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
  E31 = "Ioctl set memory region failure. Such error appears when the ioctl used for setting a given memory region fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
  E32 = "Ioctl add vCPU failure. Such error appears when the ioctl used for adding a vCPU fails. In this case, the error backtrace provides detailed information on what specifically failed during the ioctl.",
  E33 = "Ioctl start enclave failure. Such error appears when the ioctl used for starting an enclave fails. In this case, the error backtrace provides details information on what specifically failed during the ioctl.",
  E34 = "Memory overflow. Such error may appear during loading the EIF in the memory regions which will be conceded to the future enclave, if the regions offset plus the EIF file size exceeds the maximum address of the target platform.",
  E35 = "EIF file parsing error. Such errors appear when attempting to fill a memory region with a section of the EIF file, but reading the entire section fails. This might indicate that the required hugepages are not available.",
  E36 = "Enclave boot failure. Such error appears when attempting to receive the `ready` signal from a freshly booted enclave. It arises in several contexts, for instance, when the enclave is booted from an invalid EIF file and the enclave process immediately exits, failing to submit the `ready` signal. In this case, the error backtrace provides detailed information on what specifically failed during the enclave boot process.",
  E37 = "Enclave event wait error. Such error appears when monitoring an enclave descriptor for events fails.",
  E38 = "Enclave process command not executed error. Such error appears when at least one enclave fails to provide the description information.",
  E39 = "Enclave process connection failure. Such error appears when the enclave manager fails to connect to at least one enclave process for retrieving the description information.",
  E40 = "Socket path not found. Such error appears when the Nitro CLI process fails to build the corresponding socket path starting from a given enclave ID.",
  E41 = "Enclave process send reply failure. Such error appears when the enclave process fails to submit the status code to the Nitro CLI process after performing a run / describe / terminate command.",
  E42 = "Enclave mmap error. Such error appears when allocating the enclave memory fails.",
  E43 = "Enclave munmap error. Such error appears when unmapping the enclave memory fails.",
  E44 = "Enclave console connection failure. Such error appears when the Nitro CLI process fails to establish a connection to a running enclave's console.",
  E45 = "Enclave console read error. Such error appears when reading from a running enclave's console fails.",
  E46 = "Enclave console write output error. Such error appears when writing the information retrieved from a running enclave's console (to a given stream) fails.",
  E47 = "Integer parsing error. Such error appears when trying to connect to a running enclave's console, but the enclave CID cannot be parsed correctly.",
  E48 = "EIF building error. Such error appears when trying to build an EIF file. In this case, the error backtrace provides detailed information on the failure reason.",
  E49 = "Docker image build error. Such error appears when trying to build and EIF file, but building the corresponding docker image fails. In this case, the error backtrace provides detailed information on the failure reason.",
  E50 = "Docker image pull error. Such error appears when trying to build an EIF file, but pulling the corresponding docker image fails. In this case, the error backtrace provides detailed informatino on the failure reason.",
  E51 = "Artifacts path environment variable not set. Such error appears when trying to build an EIF file, but the artifacts path environment variable is not set.",
  E52 = "Blobs path environment variable not set. Such error appears when trying to build an EIF file, but the blobs path environment variable is not set.",
  E53 = "Clock skew error. Such error appears when continuously reading from a running enclave's console, but measuring the time elapsed between consecutive reads failed.",
  E54 = "Signal masking error. Such error appears if attempting to mask specific signals before creating an enclave process fails.",
  E55 = "Signal unmasking error. Such error appears if attempting to unmask specific signals after creating an enclave process fails.",
  E56 = "Logger error. Such error appears when attempting to initialize the underlying logging system fails.",
  E57 = "Hasher error. Such error appears when trying to initialize a hasher or write bytes to it, resulting in a IO error.",
  E58 = "Naming error. Such error appears when trying to perform an enclave operation using the enclave name and the name is invalid.",
  E59 = "EIF signature checker error. Such error appears when validation of the signing certificate fails.",
  E60 = "Signing error. Such error appears if incorrect key or certificate paths are provided, or when AWS credenrials need to be refreshed to use a KMS key.",
}

M.codes = E

-- Normalises "E26", "e26", "26", 26, "E026" to "E26"; nil when it is not an error code number.
function M.normalize(code)
  if type(code) == "number" then
    if code ~= math.floor(code) or code < 0 then return nil end
    return string.format("E%02d", math.tointeger(code))
  end
  if type(code) ~= "string" then return nil end
  local digits = code:match("^%s*[Ee]?(%d+)%s*$")
  if not digits or #digits > 4 then return nil end
  return string.format("E%02d", tonumber(digits))
end

-- The entry for a code (any form M.normalize accepts), or nil.
function M.get(code)
  local c = M.normalize(code)
  return c and E[c] or nil
end

-- The documentation link for a code (also for codes nitrodiag does not know).
function M.doc_url(code)
  return M.DOC_BASE .. "#" .. (M.normalize(code) or tostring(code))
end

-- Exactly what `nitro-cli explain --error-code <code>` prints (to stderr), without the final newline.
function M.explain_text(code)
  local c = M.normalize(code) or tostring(code)
  local e = E[c]
  if e and e.explain then return e.explain end
  return "No such error code " .. c
end

-- All entries, sorted by number.
function M.list()
  local out = {}
  for _, e in pairs(E) do out[#out + 1] = e end
  table.sort(out, function(a, b) return a.number < b.number end)
  return out
end

-- The driver's error codes as nitro-cli words them in err logs (one table, in core/nitrocli.c): name -> text.
M.IOCTL = require("nd.nitrocli").IOCTL

-- ioctl_name(text) -> the NE_ERR_* name whose nitro-cli text appears in text, or nil
function M.ioctl_name(text)
  for name, t in pairs(M.IOCTL) do
    if type(text) == "string" and text:find(t, 1, true) then return name end
  end
  return nil
end

-- detailed(code, info) -> the text nitro-cli prints for an error, exactly as get_detailed_info builds it: "[ E26 ] "
-- followed by the code's text with info (a list of strings/numbers, nitro-cli's add_info) filled in. Unknown codes
-- give "No such error code Exx".
function M.detailed(code, info)
  local c = M.normalize(code) or tostring(code)
  info = info or {}
  local tpl = M.DETAILED[c]
  if not tpl then return "[ " .. c .. " ] No such error code " .. c end
  if c == "E26" and #info < 3 then tpl = M.DETAILED.E26_2 end
  if c == "E19" and #info >= 2 then tpl = tpl .. M.DETAILED.E19_2 end
  local i = 0
  local text = tpl:gsub("{}", function()
    i = i + 1
    local v = info[i]
    return v == nil and "MISSING_INFO" or tostring(v)
  end)
  return "[ " .. c .. " ] " .. text
end

-- The first line nitro-cli prints for an error: "[ E26 ] Insufficient memory requested. <detail>".
function M.headline(code, detail)
  local e = M.get(code)
  local c = M.normalize(code) or tostring(code)
  local s = "[ " .. c .. " ] " .. (e and e.title or "Unknown error") .. "."
  if detail and detail ~= "" then s = s .. " " .. detail end
  return s
end

return M

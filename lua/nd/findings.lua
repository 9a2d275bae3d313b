-- nd.findings — the one registry of findings: every code a runbook, triage or explain emits, with its severity,
-- title, message template, remediation (exact commands) and references (nitro-cli code, AWS doc, the public thread
-- the knowledge comes from). One code per cause: a cause reads the same wherever it is found.
--
--   local findings = require "nd.findings"
--   s:finding(findings.make("ENCLAVE_MEMORY_BELOW_EIF", { memory_mib = 512, min_memory_mib = 2148 }, { headline }))
--
-- Entry fields (findings.define):
--   code         "ENCLAVE_MEMORY_BELOW_EIF" (UPPER_SNAKE; nitro-cli's own codes "E00".."E60" are generic entries)
--   severity     "fail" | "warn" | "info" | "ok"
--   title        one line, no variables
--   message      template; {name} is replaced by vars.name ("?" when missing)
--   remediation  list of templates, exact commands first
--   refs         { nitro_cli = "E26", doc = url, issues = { "aws/aws-nitro-enclaves-cli#243", … }, source = "src/…:line" }
-- The shipped entries are below; nitro-cli's codes E00–E60 are derived from nd.nitro_errors; operators' rule files
-- may add entries with findings.define (docs/diagnosis.md).
local errors = require "nd.nitro_errors"

local M = {}

local REG = {}
local SEVERITY = { fail = true, warn = true, info = true, ok = true }

M.ALLOCATOR_UNIT = "nitro-enclaves-allocator.service"
M.ALLOCATOR_YAML = "/etc/nitro_enclaves/allocator.yaml"
M.DOC_BASE = errors.DOC_BASE

-- define(entry) -> entry. Raises on a malformed entry (a programming error in a rule file). Defining a code again
-- replaces it (operators may reword a shipped entry).
function M.define(t)
  assert(type(t) == "table", "nd.findings.define: table expected")
  assert(type(t.code) == "string" and t.code:match("^[%u%d_]+$"), "nd.findings.define: code must be UPPER_SNAKE")
  assert(SEVERITY[t.severity], "nd.findings.define: " .. t.code .. ": severity must be fail, warn, info or ok")
  assert(type(t.title) == "string", "nd.findings.define: " .. t.code .. ": title expected")
  t.message = t.message or t.title
  if type(t.remediation) == "string" then t.remediation = { t.remediation } end
  t.remediation = t.remediation or {}
  t.refs = t.refs or {}
  t.refs.issues = t.refs.issues or {}
  if t.refs.nitro_cli and not t.refs.doc then t.refs.doc = errors.doc_url(t.refs.nitro_cli) end
  REG[t.code] = t
  return t
end

-- get(code) -> entry | nil
function M.get(code) return REG[code] end

-- list() -> all entries sorted by code
function M.list()
  local out = {}
  for _, e in pairs(REG) do out[#out + 1] = e end
  table.sort(out, function(a, b) return a.code < b.code end)
  return out
end

-- render(template, vars) -> string with each {name} replaced by tostring(vars.name), "?" when missing.
function M.render(template, vars)
  vars = vars or {}
  return (tostring(template):gsub("{([%w_]+)}", function(k)
    local v = vars[k]
    if v == nil then return "?" end
    return tostring(v)
  end))
end

-- make(code, vars, evidence) -> finding {code, severity, title, message, evidence, remediation, remediation_list,
-- refs}, ready for s:finding(). vars fill the templates; vars.fix (a string) is put before the registry's
-- remediation (the numbers of this case); vars.severity overrides the entry's. Raises on an unknown code.
function M.make(code, vars, evidence)
  local e = REG[code]
  if not e then error("nd.findings.make: unknown finding code " .. tostring(code), 2) end
  vars = vars or {}
  local rem = {}
  if vars.fix then rem[1] = vars.fix end
  for _, r in ipairs(e.remediation) do rem[#rem + 1] = M.render(r, vars) end
  local ev = {}
  for _, l in ipairs(evidence or {}) do if l and l ~= "" then ev[#ev + 1] = l end end
  return {
    code = code, severity = vars.severity or e.severity, title = e.title, message = M.render(e.message, vars),
    evidence = ev, remediation = #rem > 0 and table.concat(rem, "; ") or nil, remediation_list = rem, refs = e.refs,
  }
end

-- ---- nitro-cli's own codes: generic entries (the code is known, the cause is not) ------------------------------
for _, e in ipairs(errors.list()) do
  M.define{ code = e.code, severity = "fail", title = e.code .. " " .. e.title,
    message = "[ " .. e.code .. " ] " .. e.title .. ": {detail}",
    remediation = e.remediation, refs = { nitro_cli = e.code, doc = e.doc_url } }
end

local ALLOC = M.ALLOCATOR_UNIT
local YAML = M.ALLOCATOR_YAML
local RESTART = "sudo systemctl restart " .. ALLOC
local CLI = "aws/aws-nitro-enclaves-cli#"

-- ---- host set-up: device, driver, group, allocator ----------------------------------------------------------------
M.define{ code = "DEVICE_MISSING", severity = "fail", title = "No Nitro Enclaves device on this host",
  message = "/dev/nitro_enclaves does not exist: the instance was launched without enclave support or the nitro_enclaves driver is not loaded",
  remediation = { "check the instance: aws ec2 describe-instances --instance-ids <id> --query 'Reservations[].Instances[].EnclaveOptions' (Enabled must be true; set it at launch with --enclave-options 'Enabled=true', or stop the instance and modify it)",
    "load the driver: sudo modprobe nitro_enclaves; lsmod | grep nitro_enclaves", "then " .. RESTART },
  refs = { nitro_cli = "E19", doc = "https://docs.aws.amazon.com/enclaves/latest/user/create-enclave.html" } }
M.define{ code = "DRIVER_NOT_LOADED", severity = "fail", title = "The nitro_enclaves driver is not loaded",
  message = "{file} cannot be opened: the nitro_enclaves kernel module is not loaded (its CPU pool parameter does not exist)",
  remediation = { "sudo modprobe nitro_enclaves && lsmod | grep nitro_enclaves",
    "install the driver if modprobe fails: sudo dnf install aws-nitro-enclaves-cli (AL2023) / sudo amazon-linux-extras install aws-nitro-enclaves-cli (AL2)",
    "then " .. RESTART },
  refs = { nitro_cli = "E19", source = "src/enclave_proc/resource_manager.rs (ne_cpus read before the device)" } }
M.define{ code = "NOT_IN_NE_GROUP", severity = "fail", title = "The user may not use the Nitro Enclaves device or logs",
  message = "{operation} of {file} was refused: this user is not in group ne (or has not logged in again since being added)",
  remediation = { "sudo usermod -aG ne $USER && sudo usermod -aG docker $USER, then log out and in (id must list ne)",
    "or run nitro-cli with sudo" },
  refs = { nitro_cli = "E19", doc = "https://docs.aws.amazon.com/enclaves/latest/user/nitro-enclave-cli-install.html" } }
M.define{ code = "LOG_FILE_NOT_WRITABLE", severity = "fail", title = "nitro-cli cannot open its log file",
  message = "nitro-cli could not open its log {file}: /var/log/nitro_enclaves is missing or has the wrong owner, or the user is not in group ne",
  remediation = { "ls -l /var/log/nitro_enclaves; the package makes it so: sudo mkdir -p /var/log/nitro_enclaves && sudo touch /var/log/nitro_enclaves/nitro_enclaves.log && sudo chown -R root:ne /var/log/nitro_enclaves && sudo chmod 775 /var/log/nitro_enclaves && sudo chmod 664 /var/log/nitro_enclaves/nitro_enclaves.log",
    "sudo usermod -aG ne $USER, then log in again" },
  refs = { nitro_cli = "E19", source = "SPECS/aws-nitro-enclaves-cli.spec (%post: log dir 775, log file 664, root:ne)",
    issues = { "aws/aws-nitro-enclaves-sdk-c#104" } } }
M.define{ code = "EIF_BLOBS_MISSING", severity = "fail", title = "build-enclave cannot find the enclave kernel and init blobs",
  message = "nitro-cli build-enclave could not {operation} {file}: the files it packs into every EIF (kernel, its command line, init, nsm.ko, linuxkit) are not in {dir}",
  remediation = { "install them: sudo dnf install aws-nitro-enclaves-cli-devel (Amazon Linux 2: sudo yum install aws-nitro-enclaves-cli-devel); ls -l /usr/share/nitro_enclaves/blobs/",
    "nitro-cli built from source or run from a container: export NITRO_CLI_BLOBS=<dir holding bzImage (Image on arm64), bzImage.config, cmdline, init, nsm.ko, linuxkit>" },
  refs = { nitro_cli = "E19", source = "src/lib.rs build_from_docker (NITRO_CLI_BLOBS, default /usr/share/nitro_enclaves/blobs/); SPECS/aws-nitro-enclaves-cli.spec %files devel",
    issues = { CLI .. "513" } } }
M.define{ code = "EIF_FILE_MISSING", severity = "fail", title = "The EIF file cannot be opened",
  message = "{operation} of the EIF {file} failed: the path is wrong or not readable",
  remediation = { "ls -l {file}", "pass the path of the file build-enclave wrote with --eif-path" },
  refs = { nitro_cli = "E19" } }
M.define{ code = "WORKLOAD_UNREADABLE", severity = "warn", title = "A workload file is not a nitro-cli --config document",
  message = "{file}: not a nitro-cli run-enclave --config JSON with eif_path",
  remediation = { "write it as `nitro-cli run-enclave --config` reads it: {\"eif_path\": …, \"memory_mib\": …, \"cpu_count\": …}",
    "or pass the workload on the command line: nitrodiag diag10 workload=FILE" } }
M.define{ code = "ALLOCATOR_MEMORY_TOO_SMALL", severity = "fail", title = "The allocator reserved less memory than the enclave asks for",
  message = "run-enclave asked for {memory_mib} MiB, more than the hugepage memory the allocator reserved",
  remediation = { "set memory_mib: {memory_mib} (or more) in " .. YAML .. ", then " .. RESTART,
    "or ask for less memory (not below the EIF's E26 minimum)" },
  refs = { nitro_cli = "E27", issues = { CLI .. "213" } } }
M.define{ code = "ENCLAVE_MEMORY_BELOW_EIF", severity = "fail", title = "The enclave is given less memory than its EIF needs",
  message = "--memory {memory_mib} MiB is below the EIF's minimum of {min_memory_mib} MiB (4 × the EIF size)",
  remediation = { "nitro-cli run-enclave … --memory {min_memory_mib} (or more)", "keep memory_mib in " .. YAML .. " ≥ {min_memory_mib} and " .. RESTART },
  refs = { nitro_cli = "E26" } }
M.define{ code = "ENCLAVES_HOLD_POOL", severity = "fail", title = "Another enclave holds the CPU pool",
  message = "the driver refused to create the enclave because no CPU of the pool is free: an enclave that is still running (or a stale one) holds them",
  remediation = { "nitro-cli describe-enclaves", "nitro-cli terminate-enclave --enclave-id <id> (or --all), then run again",
    "to run several enclaves, raise cpu_count in " .. YAML .. " and " .. RESTART },
  refs = { nitro_cli = "E29", source = "src/enclave_proc/resource_manager.rs do_ioctl NE_ERR_NO_CPUS_AVAIL_IN_POOL" } }
M.define{ code = "CPU_POOL_NOT_RELEASED", severity = "fail", title = "The CPU pool was not yet free (previous enclave still being torn down)",
  message = "the driver refused to create the enclave (E29 before memory allocation): the CPUs of the pool were not free yet; right after a previous enclave exited this is transient",
  remediation = { "nitro-cli describe-enclaves (an enclave listed there holds the pool: terminate it)",
    "if none is listed, wait a few seconds and retry; if it persists, " .. RESTART,
    "scripts that restart enclaves in a loop: wait until describe-enclaves is empty before run-enclave" },
  refs = { nitro_cli = "E29", issues = { CLI .. "433" }, source = "src/enclave_proc/resource_manager.rs (Create VM ioctl)" } }
M.define{ code = "MEMORY_REGIONS_MAX", severity = "fail", title = "Too many memory regions for one enclave",
  message = "the enclave's memory is made of more hugepage regions than the driver allows (2 MiB pages for a large enclave)",
  remediation = { "reserve 1 GiB hugepages: restart the allocator so it takes 1 GiB pages first (" .. RESTART .. ", early after boot)",
    "or give the enclave less memory" },
  refs = { nitro_cli = "E29", source = "src/enclave_proc/resource_manager.rs do_ioctl NE_ERR_MEM_MAX_REGIONS" } }
M.define{ code = "CPU_POOL_TOO_SMALL", severity = "fail", title = "The CPU pool has fewer CPUs than requested",
  message = "run-enclave asked for {cpu_count} CPUs; the enclave CPU pool (ne_cpus) has fewer",
  remediation = { "cat /sys/module/nitro_enclaves/parameters/ne_cpus", "set cpu_count: {cpu_count} in " .. YAML .. " and " .. RESTART },
  refs = { nitro_cli = "E22" } }
M.define{ code = "CPU_NOT_IN_POOL", severity = "fail", title = "A requested CPU is not in the enclave CPU pool",
  message = "CPU {cpu_id} is not in the enclave CPU pool",
  remediation = { "cat /sys/module/nitro_enclaves/parameters/ne_cpus", "add it (with its sibling) to cpu_pool in " .. YAML .. " and " .. RESTART },
  refs = { nitro_cli = "E21" } }
M.define{ code = "HUGEPAGES_MISSING", severity = "fail", title = "No hugepages reserved (or not visible)",
  message = "nitro-cli found no hugepage memory: the allocator did not reserve it, or nitro-cli runs in a container that does not see the host's hugepages",
  remediation = { "grep Huge /proc/meminfo; " .. "systemctl status " .. ALLOC,
    "in a container: run privileged with -v /dev/hugepages:/dev/hugepages and the host's /sys, or run nitro-cli on the parent instance" },
  refs = { nitro_cli = "E35" } }
M.define{ code = "ALLOCATOR_DRIVER_MISSING", severity = "fail", title = "The allocator service found no nitro_enclaves driver",
  message = "nitro-enclaves-allocator.service failed because the nitro_enclaves driver is not inserted",
  remediation = { "sudo modprobe nitro_enclaves", "check the instance has enclave support enabled (EnclaveOptions)", RESTART },
  refs = {} }
M.define{ code = "ALLOCATOR_NUMA_MEMORY", severity = "fail", title = "One NUMA node cannot hold memory_mib",
  message = "the allocator could not reserve {memory_mib} MiB of hugepages on one NUMA node",
  remediation = { "lower memory_mib in " .. YAML .. ", or free memory (drop caches, stop services) and " .. RESTART,
    "reserve early: restart the allocator right after boot, before memory fragments" },
  refs = {} }
M.define{ code = "ALLOCATOR_CONFIG", severity = "fail", title = "allocator.yaml cannot be used as it is",
  message = "{detail}",
  remediation = { "cat -A " .. YAML .. " (no CRLF, no inline comment with ':' in a value, only memory_mib and cpu_count or cpu_pool)",
    "nitrodiag allocator memory_mib=… cpu_count=… rewrites the faulty lines", RESTART },
  refs = {} }
M.define{ code = "ALLOCATOR_FAILED", severity = "fail", title = "The allocator service failed",
  message = "nitro-enclaves-allocator.service failed: {error}",
  remediation = { "journalctl -u " .. ALLOC .. " -n 50", "cat " .. YAML, RESTART },
  refs = {} }
M.define{ code = "ALLOCATOR_FAILED_REPORTED_SUCCESS", severity = "fail", title = "The allocator failed to reserve the memory but reported success",
  message = "the allocator reserved {reserved_mib} MiB of the {memory_mib} MiB asked, yet the service says it succeeded (allocator scripts before aws-nitro-enclaves-cli PR #315)",
  remediation = { "grep Huge /proc/meminfo; free -m", "lower memory_mib to what one NUMA node can hold, or restart the allocator right after boot",
    "upgrade aws-nitro-enclaves-cli (the allocator then exits with failure)" },
  refs = { issues = { CLI .. "313" } } }
M.define{ code = "ALLOCATOR_SCRIPT_BUG", severity = "fail", title = "The allocator script itself fails",
  message = "the nitro-enclaves-allocator script hit an error in its own code ({detail}): a bug of that release",
  remediation = { "upgrade aws-nitro-enclaves-cli (the allocator is part of it), then " .. RESTART,
    "meanwhile cpu_count instead of cpu_pool may avoid the broken path" },
  refs = { issues = { CLI .. "192" } } }
M.define{ code = "ALLOCATOR_CPU_POOL_BUSY", severity = "fail", title = "The allocator cannot change the CPU pool while an enclave runs",
  message = "the allocator could not re-online or re-assign CPUs: an enclave is still running",
  remediation = { "nitro-cli terminate-enclave --all", RESTART }, refs = {} }

-- ---- run-enclave and boot ---------------------------------------------------------------------------------------------
M.define{ code = "ENCLAVE_MEMORY_ROUNDED_UP", severity = "warn", title = "The enclave got more memory than it asked for",
  message = "run-enclave asked for {requested_mib} MiB and was given {given_mib} MiB: the allocator reserved large (1 GiB) hugepages and an enclave gets whole pages",
  remediation = { "to fit several small enclaves, reserve 2 MiB pages: lower memory_mib so that 1 GiB pages are not used, or pre-reserve hugepages-2048kB",
    "size memory_mib for the sum of the enclaves rounded up to whole pages" },
  refs = { issues = { CLI .. "602" } } }
M.define{ code = "BOOT_HEARTBEAT_TIMEOUT", severity = "fail", title = "The enclave did not send its boot heartbeat",
  message = "the enclave did not answer the boot heartbeat in time (VsockTimeoutError): the kernel or init did not come up",
  remediation = { "run with --debug-mode --attach-console and read the console", "check the EIF was built by the same nitro-cli (nitro-cli describe-eif)",
    "give more memory (≥ 4 × the EIF size)" },
  refs = { nitro_cli = "E36" } }
M.define{ code = "BOOT_CONCURRENT_RUN", severity = "fail", title = "Two run-enclave commands at once",
  message = "another run-enclave was starting at the same time and held the heartbeat port (9000): start enclaves one after the other",
  remediation = { "serialise run-enclave calls (flock /run/lock/nitro-cli.lock nitro-cli run-enclave …)", "then retry" },
  refs = { nitro_cli = "E36" } }
M.define{ code = "BOOT_VSOCK_RECEIVE", severity = "fail", title = "The boot heartbeat connection failed",
  message = "nitro-cli lost the heartbeat connection while the enclave booted ({boot_error})",
  remediation = { "retry once; if it repeats, run with --debug-mode --attach-console", "check the vsock modules: lsmod | grep vsock" },
  refs = { nitro_cli = "E36" } }
M.define{ code = "SIGNING_CERT_EXPIRED", severity = "fail", title = "The EIF's signing certificate has expired or is invalid",
  message = "the EIF's signing certificate is expired or does not verify (nitro-cli ≥ 1.2.2 says E59; older versions boot it and time out with E36 VsockTimeoutError)",
  remediation = { "nitro-cli describe-eif --eif-path <eif> (SigningCertificate dates)", "re-sign with a valid certificate: nitro-cli build-enclave … --signing-certificate cert.pem --private-key key.pem" },
  refs = { nitro_cli = "E59", issues = { CLI .. "243" } } }
M.define{ code = "CONSOLE_NEEDS_DEBUG_MODE", severity = "fail", title = "The console needs an enclave started with --debug-mode",
  message = "nitro-cli console works only with enclaves started with --debug-mode",
  remediation = { "nitro-cli terminate-enclave --enclave-id <id>; nitro-cli run-enclave … --debug-mode; nitro-cli console --enclave-id <id>" },
  refs = { nitro_cli = "E44" } }
M.define{ code = "ENCLAVE_EXITED_CONSOLE_CLOSED", severity = "warn", title = "The enclave went away while the console was attached",
  message = "the console connection ended because the enclave stopped (its application exited and it rebooted): a consequence, not a crash of the console",
  remediation = { "read the last console lines before the disconnect: they say why the application exited", "nitro-cli describe-enclaves" },
  refs = { nitro_cli = "E45" } }
M.define{ code = "ENCLAVE_NOT_RUNNING", severity = "fail", title = "The enclave named is not running",
  message = "nitro-cli found no enclave process for that enclave ID (its socket is gone): the enclave has already exited, or the ID is wrong",
  remediation = { "nitro-cli describe-enclaves (is it listed? use the EnclaveID from there, e.g. jq -r '.[0].EnclaveID')",
    "if it exited at once, run it with --debug-mode --attach-console to see why" },
  refs = { nitro_cli = "E11", source = "src/enclave_proc_comm.rs (connect to the enclave process socket)" } }
M.define{ code = "STALE_ENCLAVE_PROCESS", severity = "fail", title = "nitro-cli cannot reach the enclave process",
  message = "nitro-cli could not talk to an enclave process: it exited (the enclave stopped) or its socket is stale",
  remediation = { "nitro-cli describe-enclaves", "ls /run/nitro_enclaves; remove stale sockets only when no enclave runs" },
  refs = { nitro_cli = "E39" } }
M.define{ code = "CID_IN_USE", severity = "fail", title = "The enclave CID is already used",
  message = "the enclave CID {cid} is used by another enclave (or is reserved)",
  remediation = { "nitro-cli describe-enclaves (EnclaveCID)", "omit --enclave-cid (automatic) or choose a free one ≥ 4" },
  refs = { nitro_cli = "E29" } }
M.define{ code = "DOCKER_API_TOO_NEW", severity = "fail", title = "The Docker daemon is newer than this nitro-cli understands",
  message = "nitro-cli's Docker client could not talk to the Docker daemon (API version mismatch)",
  remediation = { "upgrade aws-nitro-enclaves-cli", "or pull the image first: docker pull <image>" },
  refs = { nitro_cli = "E50" } }
M.define{ code = "DOCKER_IMAGE_NOT_FOUND", severity = "fail", title = "The Docker image is not available locally or in the registry",
  message = "nitro-cli could not find or pull the Docker image {image}",
  remediation = { "docker images | grep <name>; docker pull <uri>", "log in to the registry (aws ecr get-login-password | docker login …)", "check that the docker daemon runs and the user is in group docker" },
  refs = { nitro_cli = "E50" } }
M.define{ code = "DOCKER_BUILD_FAILED", severity = "fail", title = "docker build of the enclave image failed",
  message = "build-enclave --docker-dir ran docker build and it failed (a COPY of a file missing from the build context, a failing RUN, no network)",
  remediation = { "run the same build by hand to see the step that fails: docker build -t <tag> <docker-dir>",
    "check that every COPY source is inside the --docker-dir context" },
  refs = { nitro_cli = "E49", issues = { CLI .. "364" } } }
M.define{ code = "DOCKER_NOT_RUNNING", severity = "fail", title = "The Docker daemon is not reachable",
  message = "build-enclave could not reach the Docker daemon",
  remediation = { "sudo systemctl start docker", "sudo usermod -aG docker $USER, then log in again" },
  refs = { nitro_cli = "E49" } }
M.define{ code = "LINUXKIT_BUILD_FAILED", severity = "fail", title = "linuxkit could not build the EIF's ramdisk",
  message = "the EIF build failed in linuxkit ({detail}): large images (near 1 GB and more) or a full /tmp break it",
  remediation = { "df -h /tmp ~/.docker; docker image prune", "make the image smaller (multi-stage build, slim base)", "upgrade aws-nitro-enclaves-cli (newer linuxkit)" },
  refs = { nitro_cli = "E48" } }
M.define{ code = "ARTIFACTS_PATH_UNSET", severity = "fail", title = "build-enclave has no artifacts directory",
  message = "build-enclave needs HOME or NITRO_CLI_ARTIFACTS (unset in this environment, e.g. in a container or a systemd unit)",
  remediation = { "export NITRO_CLI_ARTIFACTS=/tmp/nitro-artifacts (mkdir -p it) or set HOME" },
  refs = { nitro_cli = "E51" } }
M.define{ code = "EIF_INVALID", severity = "fail", title = "The EIF file is not valid",
  message = "nitro-cli could not parse the EIF ({detail})",
  remediation = { "rebuild it: nitro-cli build-enclave …", "compare with nitrodiag eif <file>" },
  refs = { nitro_cli = "E35" } }

-- ---- the enclave's console ------------------------------------------------------------------------------------------
M.define{ code = "ENCLAVE_REBOOT_NO_INIT", severity = "fail", title = "The enclave rebooted at once without running the image's command",
  message = "{name}: the enclave rebooted at once without running the image's command",
  remediation = { "Nitro runs only CMD when an image has one (ENTRYPOINT is then ignored), and a `/bin/sh -c` command fails in an image without a shell: remove CMD, use an exec-form ENTRYPOINT [\"/init\"] and pass the mode through ENV (check with `nitrodiag image-lint <Dockerfile>`)" },
  refs = {} }
M.define{ code = "ENCLAVE_INIT_OUT_OF_MEMORY", severity = "fail", title = "The enclave's init ran out of memory unpacking the image",
  message = "{name}: init could not open /env and the kernel panicked: too little memory to unpack the image",
  remediation = { "give the enclave more memory: at least 4 × the EIF size, more for big images (`nitrodiag eif <file>` shows it)" },
  refs = { issues = { CLI .. "216" } } }
M.define{ code = "ENCLAVE_CMD_NOT_FOUND", severity = "fail", title = "The image's command is not found inside the enclave",
  message = "the image's CMD/ENTRYPOINT names a program the enclave cannot find ({detail}): the enclave ends at once",
  remediation = { "use an absolute path that exists in the image: CMD [\"/usr/bin/python3\", \"/app/server.py\"] (init does not apply WORKDIR to a relative program path)",
    "check: docker run --rm --entrypoint ls <image> -l <path>", "nitrodiag image-lint <Dockerfile>" },
  refs = { issues = { CLI .. "388" } } }
M.define{ code = "ENCLAVE_EXITED_AFTER_START", severity = "fail", title = "The enclave started, then shut down by itself",
  message = "run-enclave succeeded but the enclave hung up soon after: its application ended (or crashed) and init shut the enclave down",
  remediation = { "nitro-cli run-enclave … --debug-mode --attach-console to see the application's last words",
    "keep the application in the foreground as PID 1's child (no daemonising), exec-form CMD" },
  refs = {} }
-- nitrodiag boot (scripts/boot.lua): the PCRs the guest reads from QEMU's NSM, which QEMU extends from the EIF's
-- sections as the Nitro hypervisor does, against nd.eif's own computation of them
M.define{ code = "EIF_PCR_MISMATCH", severity = "warn", title = "The PCRs measured at boot differ from the EIF's",
  message = "PCRs read from the NSM at boot differ from the EIF's own measurements",
  remediation = { "compare `nitrodiag eif FILE` with `nitro-cli describe-eif` on the same file: a difference is a bug in one of them (report it)" },
  refs = {} }
M.define{ code = "ENCLAVE_PANIC", severity = "fail", title = "The enclave kernel panicked",
  message = "{name}: the enclave kernel panicked: {detail}",
  remediation = { "read the console lines before the panic", "give the enclave more memory (at least 4 × the EIF size)" },
  refs = {} }
M.define{ code = "ENCLAVE_NO_INIT", severity = "warn", title = "The console shows no [init] line",
  message = "{name}: no `[init] starting` line on the console",
  remediation = { "check that the image's ENTRYPOINT is [\"/init\"] and that it has no CMD" }, refs = {} }
M.define{ code = "ENCLAVE_APP_EXITED", severity = "warn", title = "The enclave's application exited",
  message = "{name}: {detail}",
  remediation = { "the application ended; its console lines before this say why" }, refs = {} }
M.define{ code = "ENCLAVE_APP_CRASHED", severity = "fail", title = "The enclave's application failed, then the enclave rebooted",
  message = "the application in the enclave failed ({detail}) and init rebooted the enclave",
  remediation = { "fix the application error shown on the console; run it with --debug-mode --attach-console to see it" }, refs = {} }

-- ---- vsock-proxy ------------------------------------------------------------------------------------------------------
M.define{ code = "VSOCK_PROXY_NOT_ALLOWED", severity = "fail", title = "vsock-proxy refused the destination (allowlist)",
  message = "vsock-proxy refused {remote}: the address and port are not in its allowlist",
  remediation = { "add it to /etc/nitro_enclaves/vsock-proxy.yaml: allowlist: - {address: <host>, port: 443}, then restart vsock-proxy",
    "the address must match exactly what is passed on the command line (a regional KMS endpoint, e.g. kms.us-east-1.amazonaws.com)" },
  refs = { doc = "https://github.com/aws/aws-nitro-enclaves-cli/blob/main/vsock_proxy/README.md" } }
M.define{ code = "VSOCK_PROXY_DNS", severity = "fail", title = "vsock-proxy cannot resolve the remote host",
  message = "vsock-proxy could not resolve {remote}",
  remediation = { "getent hosts <host> on the parent; check /etc/resolv.conf and the VPC DNS", "use -4 / -6 to match the address family the resolver returns" },
  refs = {} }
M.define{ code = "VSOCK_PROXY_BIND", severity = "fail", title = "vsock-proxy cannot listen on its vsock port",
  message = "vsock-proxy could not bind its vsock port: another proxy already listens there or vsock is not available",
  remediation = { "ss -xlp | grep vsock; ps aux | grep vsock-proxy (stop the duplicate)", "lsmod | grep vsock (vhost_vsock loaded?)" },
  refs = {} }
M.define{ code = "VSOCK_CONNECTION_REFUSED", severity = "fail", title = "Nothing listens on the vsock port",
  message = "a vsock connection failed: nothing listens on that CID/port (the peer is not started, listens elsewhere, or the enclave was restarted with another CID)",
  remediation = { "check the CID: nitro-cli describe-enclaves (EnclaveCID changes when an enclave is started again; the parent is CID 3)",
    "start the listener on the right port (vsock-proxy 8000 kms.<region>.amazonaws.com 443 on the parent; the helper's vsock listen address)" },
  refs = {} }

-- ---- KMS / kmstool / attestation ---------------------------------------------------------------------------------------
M.define{ code = "KMS_ACCESS_DENIED_ATTESTATION", severity = "fail", title = "KMS denied the request: attestation conditions do not match",
  message = "KMS denied the request; the key policy's kms:RecipientAttestation conditions (PCRs/ImageSha384) do not match this enclave",
  remediation = { "compare the policy's PCR values with nitro-cli describe-enclaves (Measurements) of the running enclave",
    "an enclave in --debug-mode has all-zero PCRs: a PCR-conditioned key cannot be used in debug mode",
    "look the request up in CloudTrail (errorCode AccessDenied, additionalEventData.recipient)" },
  refs = { doc = "https://docs.aws.amazon.com/kms/latest/developerguide/services-nitro-enclaves.html" } }
M.define{ code = "KMS_ACCESS_DENIED", severity = "fail", title = "KMS denied the request (IAM or key policy)",
  message = "KMS denied the request: {detail}",
  remediation = { "give the instance role kms:Decrypt/GenerateDataKey on the key, and allow it in the key policy",
    "look the request up in CloudTrail" },
  refs = {} }
M.define{ code = "KMS_DEBUG_MODE_PCRS_ZERO", severity = "fail", title = "A debug-mode enclave attests with all-zero PCRs",
  message = "the enclave runs in debug mode: its attestation document carries all-zero PCRs, so a key policy that checks PCRs denies it",
  remediation = { "run without --debug-mode to use the PCR-conditioned key", "or (tests only) add a policy statement for PCR0 = 96 zeros" },
  refs = { doc = "https://docs.aws.amazon.com/enclaves/latest/user/set-up-attestation.html" } }
M.define{ code = "KMS_INVALID_CIPHERTEXT", severity = "fail", title = "KMS rejected the ciphertext",
  message = "KMS answered InvalidCiphertextException: the ciphertext is corrupt, was encrypted under another key or with another encryption context",
  remediation = { "check the base64 round trip of the ciphertext", "decrypt with the same key and encryption context it was encrypted with" },
  refs = {} }
M.define{ code = "KMS_THROTTLED", severity = "warn", title = "KMS throttled the requests",
  message = "{detail}",
  remediation = { "lower the request rate and check the KMS request quotas (Service Quotas)" }, refs = {} }
M.define{ code = "KMS_TLS_TRUST_STORE", severity = "fail", title = "The enclave cannot verify KMS's TLS certificate",
  message = "the TLS handshake to KMS failed inside the enclave: the image has no CA bundle (trust store) where aws-c-io looks",
  remediation = { "add ca-certificates to the enclave image (or copy /etc/pki/tls/certs/ca-bundle.crt)", "check the system clock of the parent is right" },
  refs = {} }
M.define{ code = "KMSTOOL_NOT_IN_ENCLAVE", severity = "fail", title = "kmstool_enclave_cli was run outside an enclave",
  message = "kmstool_enclave_cli needs the NSM device (/dev/nsm), which exists only inside an enclave",
  remediation = { "run kmstool_enclave_cli inside the enclave; on the parent use kmstool-instance or the AWS CLI" },
  refs = {} }
M.define{ code = "KMS_SDK_VSOCK_ADDRESS_BUG", severity = "fail", title = "kmstool/SDK rejects the vsock proxy address (SDK v0.4.0 bug)",
  message = "aws-c-io refused the vsock endpoint (AWS_IO_SOCKET_INVALID_ADDRESS): aws-nitro-enclaves-sdk-c v0.4.0 passes the port in a way the newer aws-c-io rejects",
  remediation = { "rebuild kmstool_enclave_cli from aws-nitro-enclaves-sdk-c v0.4.1 or later" },
  refs = { issues = { "aws/aws-nitro-enclaves-sdk-c#122" } } }
M.define{ code = "KMS_NO_ROUTE", severity = "fail", title = "The enclave cannot reach KMS",
  message = "the request to KMS from the enclave failed to connect ({detail}): no vsock-proxy for KMS on the parent, or the wrong port/region",
  remediation = { "vsock-proxy 8000 kms.<region>.amazonaws.com 443 on the parent", "pass --proxy-port 8000 and the same --region to kmstool" },
  refs = {} }
M.define{ code = "KMS_CREDENTIALS", severity = "fail", title = "The KMS request was made without valid credentials",
  message = "KMS rejected the credentials ({detail}): expired or missing temporary credentials",
  remediation = { "fetch fresh role credentials from IMDS on the parent and pass all three (key id, secret, session token)" }, refs = {} }

-- ---- KMS proxy logs (nd.diagnose.kms_logs: the message carries the log's numbers) ------------------------------------
local function kmslog(code, severity, title, remediation)
  M.define{ code = code, severity = severity, title = title, message = "{detail}", remediation = remediation, refs = { doc = "docs/kms-logs.md" } }
end
kmslog("KMS_TIMEOUTS", "warn", "KMS requests timed out", { "check the route/VPC endpoint to KMS, the deadlines and the AWS Health dashboard" })
kmslog("KMS_UNAVAILABLE", "warn", "KMS unavailable (5xx or unreachable)", { "check the AWS Health dashboard, the VPC endpoint and the vsock-proxy allowlist" })
kmslog("KMS_CIRCUIT_OPEN", "warn", "The KMS proxy's circuit breaker opened", { "fix the errors that opened it; it closes by itself" })
kmslog("KMS_INVALID_REQUEST", "warn", "Requests rejected as invalid", { "check the enclave client version against the proxy's" })
kmslog("KMS_INTERNAL", "warn", "Requests failed inside the KMS proxy", { "nitrodiag kms-logs <log> mode=lines request_id=…" })
kmslog("KMS_NO_EVENTS", "warn", "No KMS proxy events in the log", { "give the proxy's log (journalctl -u kms-proxy-host -o cat)" })
kmslog("KMS_WRAPPED_LOG", "info", "Tracing-wrapped proxy log lines", {})
kmslog("KMS_PASCALCASE_CODES", "info", "PascalCase error codes in the proxy log", {})
kmslog("KMS_MALFORMED_LINES", "info", "Malformed JSON lines in the proxy log", {})
kmslog("KMS_PROXY_RESTARTED", "info", "The KMS proxy restarted", {})
kmslog("KMS_CIRCUIT_WAIT_MISCOUNTED", "info", "circuit_wait_total counts every request (old proxy defect)", {})

-- ---- EIF checks (nitrodiag eif) and other runbooks' own findings ---------------------------------------------------------
local function simple(code, severity, title, remediation, refs)
  M.define{ code = code, severity = severity, title = title, message = "{detail}", remediation = remediation or {}, refs = refs or {} }
end
simple("EIF_CRC", "fail", "The EIF's CRC does not match its content", { "the file was modified or damaged after it was built: copy or rebuild it" }, { nitro_cli = "E35" })
simple("EIF_KERNEL", "fail", "The EIF does not have exactly one kernel section", { "rebuild it with nitro-cli build-enclave" }, { nitro_cli = "E35" })
simple("EIF_CMDLINE", "warn", "The EIF does not have exactly one cmdline section", { "rebuild it with nitro-cli build-enclave" })
simple("EIF_RAMDISKS", "warn", "The EIF lacks the bootstrap or customer ramdisk", { "rebuild it with nitro-cli build-enclave (bootstrap blobs from /usr/share/nitro_enclaves/blobs)" })
simple("EIF_TRAILING", "warn", "Bytes after the EIF's last section", { "nitro-cli reads sections one after another: rebuild or truncate the file" }, { nitro_cli = "E35" })
simple("EIF_METADATA", "warn", "The EIF's metadata section is not valid", { "rebuild it with a current nitro-cli build-enclave" }, { nitro_cli = "E35" })
simple("EIF_SIGNATURE", "warn", "The EIF's signature section cannot be read", { "re-sign: nitro-cli build-enclave … --signing-certificate cert.pem --private-key key.pem" }, { nitro_cli = "E59" })
simple("NITRO_DESCRIBE_EIF", "warn", "nitro-cli describe-eif failed", { "nitrodiag explain - (paste its output)" })
simple("EIF_MEASUREMENTS_DIFFER", "warn", "nitro-cli and nitrodiag compute different measurements", { "report it with the EIF's describe-eif output: one of the two tools is wrong" })
simple("KMS_SOURCE_UNREADABLE", "fail", "The KMS proxy log cannot be read", { "give a readable file, a directory of logs, or `journal`" })

simple("ENCLAVES_RUNNING", "info", "Enclaves are running", { "terminate them first (nitrodiag cleanup id=<EnclaveID>), then run this again" })
simple("ALLOCATOR_START_FAILED", "fail", "The allocator did not start with the new values", { "journalctl -u " .. M.ALLOCATOR_UNIT .. " -n 50" })
simple("TERMINATE_FAILED", "fail", "Enclaves could not be terminated", { "retry; if an enclave stays, check nitro-cli describe-enclaves and the err logs" })
simple("ENCLAVES_REMAIN", "fail", "Enclaves remain after terminate", { "run cleanup again; an enclave stuck in TERMINATING needs the err log of its terminate" })
simple("NO_ERROR_BLOCK", "warn", "No nitro-cli error block in the input", { "paste nitro-cli's stderr (2>&1), or give the code: nitrodiag explain E26" })
simple("IMG_UNREADABLE", "fail", "The Dockerfile or image cannot be read", { "give a readable Dockerfile or a local image name" })
simple("SSM_TOO_BIG", "fail", "The SSM document is too big", { "ship big files another way (S3, or the package) and pack only the runbook" })
simple("VSOCK_BAD_ADDRESS", "fail", "Not a vsock address", { "give the enclave CID (a number) and optionally the port, e.g. nitrodiag vsock-ping 16 5000" })
simple("VSOCK_PING_FAILED", "fail", "The vsock ping failed", { "nitro-cli describe-enclaves (CID); the enclave must run vsock-pingpong in vsock mode" })
simple("VSOCK_BAD_REPLY", "fail", "The vsock peer answered something else than pong", { "something else listens on that port, or the enclave is not vsock-pingpong in vsock mode" })
simple("RULE_FILE_BROKEN", "fail", "An operator's rule file does not load", { "fix or remove the file; triage skips it meanwhile" })
simple("VSOCK_PONG", "info", "The enclave answered the vsock ping", {})

-- ---- image lint (core/imagelint.c finds them; the knowledge is here) -------------------------------------------------
M.define{ code = "IMG_SHELL_C", severity = "fail", title = "The image's command runs through a shell",
  message = "{detail}",
  remediation = { "Nitro's bootstrap init execs the image's command directly, and an enclave image (FROM scratch) usually has no /bin/sh: a command that fails or ends at once reboots the enclave immediately, the console shows only `reboot: Restarting system`. Use the exec form with a static binary: ENTRYPOINT [\"/init\"]" },
  refs = {} }
M.define{ code = "IMG_CMD_REPLACES_ENTRYPOINT", severity = "fail", title = "CMD replaces ENTRYPOINT in a Nitro enclave",
  message = "{detail}",
  remediation = { "in a Nitro enclave a CMD replaces the ENTRYPOINT: the bootstrap init runs only CMD when the image has one and uses ENTRYPOINT only when there is no CMD (Docker would pass CMD as arguments to ENTRYPOINT; Nitro does not): drop the CMD and pass settings through ENV (e.g. ENV VSOCK_PINGPONG_MODE=${MODE}), or put the whole command in ENTRYPOINT" },
  refs = {} }
M.define{ code = "IMG_NO_ENTRYPOINT", severity = "fail", title = "The image has no command",
  message = "{detail}",
  remediation = { "the bootstrap init runs CMD, or ENTRYPOINT when there is no CMD; with neither nothing runs and the enclave reboots at once (`reboot: Restarting system`): add ENTRYPOINT [\"/init\"] (exec form) to the final stage" },
  refs = {} }
M.define{ code = "IMG_INHERITED", severity = "warn", title = "The command comes from a base image",
  message = "{detail}",
  remediation = { "lint the built image's `docker inspect` output instead (Nitro runs CMD when the image has one, else ENTRYPOINT)" },
  refs = {} }
M.define{ code = "IMG_BAD_EXEC_FORM", severity = "warn", title = "An exec-form command that is not valid JSON",
  message = "{detail}",
  remediation = { "Docker treats a [...] that is not valid JSON (single quotes, a trailing comma) as the shell form and runs it through /bin/sh -c: write it with double quotes, [\"/init\"]" },
  refs = {} }
M.define{ code = "IMG_COMMAND", severity = "info", title = "What Nitro runs", message = "{detail}",
  remediation = { "Nitro runs CMD when the image has one, else ENTRYPOINT" }, refs = {} }
M.define{ code = "IMG_NO_INIT_WRAPPER", severity = "info", title = "No PID-1 wrapper in front of the command", message = "{detail}",
  remediation = { "when the command ends or dies the enclave reboots without a word: run it under nitrodiag-init (ENTRYPOINT [\"/nitrodiag-init\", \"--log\", \"9100\", \"--\", \"/app\"], nitrodiag-logd on the parent)" },
  refs = {} }

-- lint(f) -> the finding for an nd.imagelint result entry, its knowledge from the registry (`rule` only as a fallback
-- for a code the registry does not know yet)
function M.lint(f, prefix)
  local e = REG[f.code]
  local rem = e and e.remediation[1] or f.rule
  return { code = f.code, severity = f.severity, message = (prefix or "") .. f.message, title = e and e.title,
           evidence = f.evidence and f.evidence ~= "" and { f.evidence } or nil,
           remediation = f.severity ~= "info" and rem or nil }
end

-- ---- host checks (doctor, diag10) -----------------------------------------------------------------------------------------
simple("GROUP_NE_MISSING", "warn", "There is no ne group", { "install aws-nitro-enclaves-cli (it creates the group), then: sudo usermod -aG ne <user>" })
simple("ALLOCATOR_INACTIVE", "fail", "The allocator service is not active", { "sudo systemctl start " .. M.ALLOCATOR_UNIT .. " && sudo systemctl enable " .. M.ALLOCATOR_UNIT })
simple("ALLOCATOR_MEMORY_LOW", "warn", "The allocator reserves less memory than wanted", { "nitrodiag allocator memory_mib=<MiB>" })
simple("ALLOCATOR_CPUS_LOW", "warn", "The allocator reserves fewer CPUs than wanted", { "nitrodiag allocator cpu_count=<n>" })
simple("HUGEPAGES_SHORT", "fail", "The kernel holds fewer hugepages than allocator.yaml asks for", { "memory is fragmented or too small: restart the allocator (or reboot), or lower memory_mib" })
simple("ENCLAVES_NOT_RUNNING", "warn", "Enclaves in a state other than RUNNING", { "terminate them: nitrodiag cleanup id=<EnclaveID>" })
simple("STALE_ENCLAVES", "warn", "Enclaves left from earlier runs hold CPUs and memory", { "nitrodiag cleanup id=<EnclaveID> (or stale=true for nitrodiag-* leftovers), then run again" })
simple("IMDS_UNREACHABLE", "fail", "The instance metadata service does not answer", { "check the instance metadata options (HttpEndpoint enabled, HttpPutResponseHopLimit ≥ 1; 2 in containers)" })
simple("NO_INSTANCE_ROLE", "fail", "No IAM role is attached to the instance", { "attach an instance profile whose role may call kms:Decrypt / kms:GenerateDataKey on the key" })
simple("ROLE_CREDENTIALS_FAILED", "fail", "The instance role gives no credentials", { "IAM eventual consistency after attaching a role can take a minute; otherwise check the instance profile" })
simple("CLOCK_SKEW", "warn", "The clock is off", { "enable chrony with the Amazon Time Sync Service (169.254.169.123)" })
simple("KMS_PROXY_NOT_RUNNING", "fail", "The KMS proxy service is not running", { "sudo systemctl enable --now <unit> (see docs/kms-proxy.md)" })
simple("KMS_PROXY_NOT_ANSWERING", "fail", "The KMS proxy does not answer", { "journalctl -u <unit>; check metrics_listen in its config" })
simple("NITRO_CLI_MISSING", "fail", "nitro-cli is not installed", { "sudo dnf install aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel (AL2023) / sudo amazon-linux-extras install aws-nitro-enclaves-cli (AL2)" })
simple("EIF_UNREADABLE", "fail", "The EIF cannot be read", { "ls -l <eif>; rebuild it with nitro-cli build-enclave" })
simple("RUN_FAILED", "fail", "run-enclave failed", { "nitrodiag explain - (paste its output)" })
simple("VSOCK_NO_PONG", "fail", "The enclave does not answer on vsock", { "nitro-cli console --enclave-id <id> (debug mode) to see whether the server listens" })
simple("SMOKE_SILENT", "fail", "The busybox smoke enclave printed nothing", { "run it with --debug-mode --attach-console; check the console of the smoke image" })
simple("CLEANUP_INCOMPLETE", "fail", "Test enclaves this run started are still running", { "nitro-cli terminate-enclave --enclave-id <id> for each one named" })
simple("NOTHING_SELECTED", "warn", "Nothing chosen to terminate", { "nitrodiag cleanup id=<EnclaveID> | name=<name> | cid=<CID> | stale=true | all=true" })
simple("BUNDLED_RUN_FAILED", "warn", "The bundled run failed", { "read the bundle's report.md and the failed steps' logs" })
simple("BUNDLE_NOT_WRITTEN", "fail", "The bundle this run was asked to write could not be written", { "free space where --out points (df -h <dir>), or choose another --out, and run again" })
simple("HELLO_SILENT", "warn", "The hello enclave printed nothing", { "run it with --debug-mode --attach-console" })

-- The causes behind the codes nd.preflight predicts (core/preflight.c returns nitro-cli's codes and the numbers).
M.PREFLIGHT = { E26 = "ENCLAVE_MEMORY_BELOW_EIF", E27 = "ALLOCATOR_MEMORY_TOO_SMALL", E22 = "CPU_POOL_TOO_SMALL",
  E21 = "CPU_NOT_IN_POOL", E29 = "ENCLAVES_HOLD_POOL", E19 = "DRIVER_NOT_LOADED" }

-- preflight(issue [, vars]) -> the finding for one nd.preflight issue: the cause's registry entry with the issue's
-- numbers (requested, limit), nitro-cli's would-be text as evidence; codes without a mapped cause keep nitro-cli's
function M.preflight(issue, vars)
  vars = vars or {}
  local code = M.PREFLIGHT[issue.code] or (REG[issue.code] and issue.code) or "E00"
  local v = { memory_mib = issue.requested, min_memory_mib = issue.limit, cpu_count = issue.requested,
              cpu_id = issue.requested, detail = issue.message, file = "/sys/module/nitro_enclaves/parameters/ne_cpus" }
  if issue.code == "E27" then v.memory_mib = issue.requested end
  for k, x in pairs(vars) do v[k] = x end
  local f = M.make(code, v, { issue.headline or ("[ " .. issue.code .. " ] " .. tostring(issue.message)), issue.note ~= "" and issue.note or nil })
  f.nitro_cli = issue.code
  return f
end

-- ---- triage's own -----------------------------------------------------------------------------------------------------
M.define{ code = "UNRECOGNISED", severity = "fail", title = "Input not recognised",
  message = "unrecognised input: {detail}",
  remediation = { "give the stderr of the nitro-cli command (2>&1), a /var/log/nitro_enclaves/err*.log, the console, journalctl -u " .. ALLOC .. ", vsock-proxy or KMS tool output" },
  refs = {} }
M.define{ code = "BAD_INPUT", severity = "fail", title = "Input cannot be read as text",
  message = "{detail}", remediation = { "give a text file (nitro-cli output, a log)" }, refs = {} }
M.define{ code = "ERR_LOG", severity = "warn", title = "A nitro-cli err log",
  message = "nitro-cli failed in {action}: {subaction}",
  remediation = { "the err log's name is the time of the failure: the `[ Exx ]` block nitro-cli printed then names the code (nitrodiag explain Exx)" },
  refs = {} }

-- ---- inside the enclave: nitrodiag-init's lines and what applications print when they fail there --------------------
-- (rules: lua/nd/rules/enclave.lua; the init: enclave/init.c; the log channel: core/nd_logchan.h)
local INIT_FIX = "run the image under nitrodiag-init (ENTRYPOINT [\"/nitrodiag-init\", \"--log\", \"9100\", \"--\", \"/app\"]) " ..
  "and nitrodiag-logd on the parent: its check lines say what the enclave lacks, with or without debug mode"
-- A command that does not exist is nd.rules.console's ENCLAVE_CMD_NOT_FOUND (one code per cause): init's lines feed it too.
M.define{ code = "ENCLAVE_APP_INTERPRETER_MISSING", severity = "fail", title = "The enclave's command is a script whose interpreter is not in the image",
  message = "{app} is a script for {interp}, which the image does not have: execve fails with No such file or directory",
  remediation = { "add the interpreter to the image (FROM scratch images have no /bin/sh, python or node)",
    "or build the application as a static binary and make it the ENTRYPOINT (exec form)" },
  refs = { source = "enclave/init.c (check_program: #! line)" } }
M.define{ code = "ENCLAVE_APP_LOADER_MISSING", severity = "fail", title = "The enclave's command is dynamically linked and its loader is missing",
  message = "{app} needs the dynamic loader {loader}, which is not in the image: execve fails with No such file or directory although the file exists",
  remediation = { "link it statically (Go: CGO_ENABLED=0; Rust: --target x86_64-unknown-linux-musl; C: -static)",
    "or build FROM a base image with the libc it was linked against (ldd <binary> on the build machine lists what it needs)" },
  refs = { source = "enclave/init.c (check_program: PT_INTERP)" } }
M.define{ code = "ENCLAVE_APP_CANNOT_EXEC", severity = "fail", title = "The enclave's command cannot be executed",
  message = "{detail}",
  remediation = { "build the binary for the enclave's architecture (the parent instance's: x86_64 or aarch64/Graviton)",
    "make it executable in the image: COPY --chmod=755 …, or RUN chmod 755 in the build stage" },
  refs = { source = "enclave/init.c (check_program)" } }
M.define{ code = "ENCLAVE_APP_KILLED_BY_SIGNAL", severity = "fail", title = "The enclave's application was killed by a signal",
  message = "{app} died of {signal}{core} after {secs} s{detail}",
  remediation = { "SIGSEGV/SIGBUS/SIGILL at start-up: a binary built for another CPU or libc, or a crash in the code; run the same image with docker run to compare",
    "SIGKILL with no one sending it: the kernel's OOM killer; give the enclave more memory (--memory)",
    "SIGABRT: an assertion or abort() in the application; its last lines before this say which" },
  refs = { source = "enclave/init.c (describe_status)" } }
M.define{ code = "ENCLAVE_APP_PANIC_AT_START", severity = "fail", title = "The enclave's application panicked at start-up",
  message = "the application in the enclave panicked: {detail}",
  remediation = { "read the panic line: in an enclave it is most often a missing device (/dev/nsm), no network, no loopback, no CA bundle or a missing file",
    INIT_FIX },
  refs = {} }
M.define{ code = "ENCLAVE_LOOPBACK_DOWN", severity = "fail", title = "The application used 127.0.0.1 but the enclave's loopback is down",
  message = "the application used 127.0.0.1/localhost while the enclave's lo interface is down: connections to 127.0.0.1 fail with Network is unreachable, although a bind there still succeeds ({detail})",
  remediation = { "bring lo up before the application starts: nitrodiag-init --lo-up (or `ip link set lo up` in a start script when the image has iproute2)",
    "the enclave has no other interface: listen on AF_VSOCK for the parent, and use 127.0.0.1 only between processes inside the enclave" },
  refs = { issues = { "enclaver-io/enclaver#200", "richardfan1126/nitro-enclave-python-demo#4", "marlinprotocol/oyster-monorepo#135" } } }
M.define{ code = "ENCLAVE_TCP_SERVER_NOT_VSOCK", severity = "warn", title = "The application listens on TCP, which the parent cannot reach",
  message = "the application listens on TCP ({detail}); an enclave has no network interface, so the parent can only connect over vsock (CID, port)",
  remediation = { "listen on AF_VSOCK (CID VMADDR_CID_ANY, the port the parent connects to), or run a vsock-to-TCP forwarder inside the enclave (socat VSOCK-LISTEN:PORT,fork TCP:127.0.0.1:PORT) with lo up",
    "on the parent, forward TCP to the enclave: socat TCP4-LISTEN:PORT,fork VSOCK-CONNECT:<enclave-cid>:PORT" },
  refs = { issues = { "MystenLabs/nautilus#32", "aws/aws-nitro-enclaves-samples#14" } } }
M.define{ code = "ENCLAVE_NO_DIRECT_NETWORK", severity = "fail", title = "The application tried to reach the network directly",
  message = "the application tried to reach {what} directly ({detail}); an enclave has no network: only vsock to the parent",
  remediation = { "send the traffic through a proxy on the parent: vsock-proxy (or the KMS proxy) on the parent, a local forwarder in the enclave from 127.0.0.1:PORT to vsock CID 3",
    "IMDS (169.254.169.254) is unreachable from an enclave: pass credentials in from the parent (kmstool-instance style) instead",
    "names do not resolve inside an enclave (no DNS): map the host to 127.0.0.1 in the image's /etc/hosts, with the forwarder listening there" },
  refs = { doc = "https://docs.aws.amazon.com/enclaves/latest/user/nitro-enclave-concepts.html", issues = { "enclaver-io/enclaver#200", "aws/aws-nitro-enclaves-cli#648" } } }
M.define{ code = "ENCLAVE_TLS_NO_CA_BUNDLE", severity = "fail", title = "The application cannot verify TLS certificates: no CA bundle in the image",
  message = "TLS verification failed in the enclave ({detail}){ca}",
  remediation = { "add a CA bundle to the image: COPY --from=<build> /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ (Debian/Alpine path; Amazon Linux: /etc/pki/tls/certs/ca-bundle.crt)",
    "or point the TLS stack at it: ENV SSL_CERT_FILE=/path/to/bundle.crt (Go, OpenSSL, rustls-native-certs)" },
  refs = { issues = { "MystenLabs/hashi#795", "aws/aws-nitro-enclaves-sdk-c#80" } } }
M.define{ code = "ENCLAVE_TLS_WRONG_PROXY_HOST", severity = "fail", title = "The TLS name does not match: the port is forwarded to another host",
  message = "the certificate presented does not match the name the application asked for ({detail}): the local port goes through a vsock-proxy that forwards to a different host",
  remediation = { "check which host the parent's vsock-proxy forwards that port to: vsock-proxy <port> <host> 443 must name the host the application connects to (e.g. kms.<region>.amazonaws.com)",
    "one vsock-proxy (one port) per remote host; map each name to 127.0.0.1 with its own local port",
    "with a VPC endpoint, keep the service's public name in the enclave and let the parent resolve it (private DNS)",
    "kmstool: its --region must be the region of the KMS host the vsock-proxy forwards to (vsock-proxy 8000 kms.<region>.amazonaws.com 443)" },
  refs = { issues = { "aws/aws-nitro-enclaves-cli#610", "aws/aws-nitro-enclaves-sdk-c#32" } } }
M.define{ code = "KMS_RECIPIENT_NO_PUBLIC_KEY", severity = "fail", title = "The KMS Recipient's attestation document carries no public key",
  message = "KMS was given an attestation document without a public key as Recipient ({detail})",
  remediation = { "request the attestation document with the enclave's RSA-2048 public key (NSM Attestation { public_key: Some(der) })",
    "check the document: nitrodiag attest <file> shows whether public_key is present" },
  refs = { doc = "https://docs.aws.amazon.com/kms/latest/APIReference/API_RecipientInfo.html",
    source = "aws-nitro-enclaves-sdk-c docs/kms-apis/RecipientRequest.md (RSA2048 key as DER SubjectPublicKeyInfo)" } }
M.define{ code = "KMS_RECIPIENT_KEY_ENCODING", severity = "fail", title = "The KMS Recipient's public key is not DER SubjectPublicKeyInfo",
  message = "the public key in the Recipient's attestation document is not an RSA-2048 key in DER SubjectPublicKeyInfo form ({detail})",
  remediation = { "encode the key as DER SubjectPublicKeyInfo (openssl: i2d_PUBKEY; Python cryptography: public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)), not PEM and not PKCS#1",
    "use RSA 2048 with KeyEncryptionAlgorithm RSAES_OAEP_SHA_256" },
  refs = { source = "aws-nitro-enclaves-sdk-c docs/kms-apis/RecipientRequest.md" } }
M.define{ code = "ENCLAVE_LOG_LINES_DROPPED", severity = "warn", title = "The enclave dropped log lines the parent did not read in time",
  message = "{detail}: the log channel is lossy by design so the application never waits; the lines in between are missing",
  remediation = { "keep nitrodiag-logd running on the parent before the enclave starts (systemctl enable --now nitrodiag-logd)",
    "give nitrodiag-init a larger queue: --log-buffer 4194304" },
  refs = { source = "core/nd_logchan.h" } }


M.define{ code = "ENCLAVE_LOGS_NONE", severity = "warn", title = "No enclave log channel files on this host",
  message = "{detail}",
  remediation = { "start the receiver on the parent: systemctl enable --now nitrodiag-logd (it writes /var/log/nitrodiag/enclaves/<enclave-id>.log)",
    "run the enclave's image under nitrodiag-init with the log channel: ENTRYPOINT [\"/nitrodiag-init\", \"--log\", \"9100\", \"--\", \"/app\"]" },
  refs = { source = "scripts/enclave-logs.lua" } }

-- ---- attestation documents, KMS key policies, signed EIFs (nitrodiag attest, kms-policy, eif) -----------------------
local ATT_DOC = "https://docs.aws.amazon.com/enclaves/latest/user/set-up-attestation.html"
local KMS_DOC = "https://docs.aws.amazon.com/kms/latest/developerguide/conditions-nitro-enclaves.html"
local NSM_DOC = "aws/aws-nitro-enclaves-nsm-api docs/attestation_process.md"
local FRESH = "take a fresh document from the enclave (nsm get-attestation-document) and run nitrodiag attest on it"

-- ---- attestation documents -------------------------------------------------------------------------------------
local function att(code, title, message, remediation)
  M.define{ code = code, severity = "fail", title = title, message = message, remediation = remediation,
            refs = { doc = ATT_DOC, source = NSM_DOC } }
end
att("ATTEST_UNREADABLE", "The attestation document cannot be read",
  "{reason}", { "pass the document as raw CBOR, hex or base64 (the AttestationDocument field of a KMS Recipient is base64)" })
att("ATTEST_FIELDS", "The attestation document has a missing or malformed field", "{reason}", { FRESH })
att("ATTEST_ALG", "The attestation document is not signed with ES384", "{reason}",
  { "Nitro documents are COSE_Sign1 with ES384 (alg -35) by a P-384 key: this one was not made by the NSM" })
att("ATTEST_SIGNATURE", "The attestation document's signature does not verify", "{reason}",
  { "the document was modified after the NSM signed it (re-encoded, truncated or edited): pass it through unchanged", FRESH })
att("ATTEST_ROOT", "The attestation document does not chain to the AWS Nitro Enclaves root", "{reason}",
  { "a document from a real enclave chains to AWS_NitroEnclaves_Root-G1; for a development PKI pass its root with root=ROOT.pem" })
att("ATTEST_CHAIN_ORDER", "The attestation document's cabundle is out of order", "{reason}",
  { "cabundle runs root first, then each intermediate, the certificate's issuer last; the NSM writes it so: do not reorder it" })
att("ATTEST_CHAIN", "The attestation document's certificate chain does not verify", "{reason}", { FRESH })
att("ATTEST_EXPIRED", "A certificate had expired at the document's time", "{reason}",
  { "the host clock or the document is wrong: check timedatectl, then " .. FRESH })
att("ATTEST_NOT_YET_VALID", "A certificate was not yet valid at the document's time", "{reason}",
  { "the document's timestamp is before its certificates: check the enclave's and host's clock, then " .. FRESH })
att("ATTEST_CA", "The attestation document's chain breaks a CA constraint", "{reason}", { FRESH })
att("ATTEST_NONCE", "The attestation document's nonce is not the expected one", "{reason}",
  { "a replayed or stale document: request a new one with the current nonce" })
M.define{ code = "ATTEST_DEV_DOCUMENT", severity = "fail", title = "A development stand-in, not an attestation document",
  message = "module_id is {module_id}: nitrodiag's development document (no NSM, all-zero PCRs, no signature); real KMS refuses it",
  remediation = { "run the enclave application inside a real enclave (/dev/nsm present) to get a signed document" },
  refs = { source = "core/nd_attest.h ND_ATTEST_DEV_MODULE_ID" } }
M.define{ code = "ATTEST_STALE", severity = "warn", title = "The document verified at its own time but its chain is no longer valid",
  message = "{reason}: KMS checks the chain when it receives the document, so a stored document cannot be replayed",
  remediation = { "attestation documents are for one request: " .. FRESH }, refs = { doc = ATT_DOC } }
M.define{ code = "ATTEST_DEBUG_MODE", severity = "warn", title = "The enclave runs in debug mode: PCR0, PCR1 and PCR2 are all zero",
  message = "PCR0, PCR1 and PCR2 are all zero: the enclave was started with --debug-mode, and no KMS condition on ImageSha384 or PCR0-2 can match",
  remediation = { "nitro-cli terminate-enclave --enclave-id <id>; nitro-cli run-enclave … without --debug-mode" },
  refs = { doc = ATT_DOC } }
M.define{ code = "ATTEST_PUBLIC_KEY_NOT_RSA", severity = "warn", title = "The document's public_key is not what KMS Recipient needs",
  message = "public_key is {pk_type}{pk_bits}: KMS encrypts CiphertextForRecipient to an RSA key given as a DER SubjectPublicKeyInfo (RSAES_OAEP_SHA_256)",
  remediation = { "put the enclave's RSA-2048 (or larger) public key, DER SubjectPublicKeyInfo, in the attestation request" },
  refs = { doc = KMS_DOC } }

-- ---- KMS key policies ------------------------------------------------------------------------------------------
local function pol(code, severity, title, message, remediation)
  M.define{ code = code, severity = severity, title = title, message = message, remediation = remediation,
            refs = { doc = KMS_DOC } }
end
pol("KMS_POLICY_UNREADABLE", "fail", "The key policy cannot be read", "{reason}",
  { "aws kms get-key-policy --key-id <key> --policy-name default --output text > policy.json" })
pol("KMS_POLICY_ALLOWED", "ok", "The enclave's call is allowed", "{action} with a Recipient is allowed by statement {sid}", {})
pol("KMS_POLICY_EXPLICIT_DENY", "fail", "The enclave's call is denied by an explicit Deny",
  "{action} with a Recipient is denied by statement {sid}{why}",
  { "an explicit Deny beats every Allow: narrow the Deny (its Condition) so the enclave's measurements do not match it" })
pol("KMS_POLICY_NOT_ALLOWED", "fail", "No statement allows the enclave's call",
  "{action} with a Recipient is not allowed: no Allow statement matches{why} (default deny)",
  { "add or fix an Allow for {action} whose kms:RecipientAttestation conditions hold the enclave's measurements (StringEqualsIgnoreCase)" })
pol("KMS_POLICY_UNKNOWN", "warn", "The outcome depends on values not given", "{action}: {why}",
  { "give the missing measurements (attest=DOC, or role_arn= / instance_id= for PCR3 / PCR4)" })
pol("KMS_POLICY_BAD_CONDITION_KEY", "fail", "A condition key is not a valid attestation key",
  "condition key {key} in statement {sid} is not a KMS attestation key{hint}: the condition can never be met as intended",
  { "use kms:RecipientAttestation:ImageSha384 or kms:RecipientAttestation:PCR<n> (n = 0..31)" })
pol("KMS_POLICY_UNKNOWN_OPERATOR", "fail", "A condition operator is not an IAM operator",
  "condition operator {op} in statement {sid} is not an IAM condition operator{hint}",
  { "use StringEqualsIgnoreCase (AWS's examples), StringEquals, StringLike, with ForAnyValue:/ForAllValues: or IfExists as needed" })
pol("KMS_POLICY_VALUE_FORMAT", "warn", "A PCR value in the policy can never match",
  "{key} = {value} in statement {sid}: {why}",
  { "use the 96 lowercase hex digits of the measurement (nitro-cli describe-eif / nitrodiag attest), or StringEqualsIgnoreCase" })
pol("KMS_POLICY_PCR_MISMATCH", "fail", "A PCR condition does not hold the enclave's measurement",
  "statement {sid} expects {key} = {expected}, the enclave has {actual}{source}",
  { "put the enclave's value in the policy, or rebuild/run the enclave that the policy names" })
pol("KMS_POLICY_DEBUG_MODE", "warn", "A debug-mode enclave can never meet these conditions",
  "{detail}: a debug-mode enclave reports all-zero PCR0-2, so these conditions never hold for it",
  { "run the enclave without --debug-mode for KMS calls; debug mode is for reading the console only" })
pol("KMS_POLICY_UNCONDITIONED_ALLOW", "warn", "An Allow without attestation conditions makes the PCR conditions pointless",
  "statement {sid} allows {actions} to {principal} without any kms:RecipientAttestation condition: the parent instance (or any principal it names) can call KMS without an enclave",
  { "add the kms:RecipientAttestation conditions to statement {sid}, or remove the enclave's actions from it",
    "for the account-root statement (Enable IAM User Permissions), make sure no IAM policy in the account grants these actions without conditions" })
pol("KMS_POLICY_DENY_BLOCKS_ENCLAVE", "fail", "A Deny statement also blocks the enclave's own calls",
  "statement {sid} denies {action} even when the measurements match{why}",
  { "add a condition to the Deny that excludes the enclave (e.g. StringNotEqualsIgnoreCase on kms:RecipientAttestation:ImageSha384)" })
pol("KMS_POLICY_ONLY_NON_RECIPIENT", "fail", "The policy allows the call only without a Recipient",
  "{action} is allowed without a Recipient but not with one: the enclave's attested calls are refused while the host's plain calls pass",
  { "move the kms:RecipientAttestation conditions into an Allow that the enclave's calls match" })

M.define{ code = "KMS_POLICY_PCR3_NOT_ROLE", severity = "warn", title = "PCR3 is not the hash of the given role ARN",
  message = "PCR3 from {source} is {actual}, but SHA384(48 zero bytes ‖ \"{role_arn}\") is {expected}: {why}",
  remediation = { "use the role ARN of the instance profile attached to the parent instance (aws ec2 describe-iam-instance-profile-associations); the NSM measures it when the enclave starts" },
  refs = { doc = ATT_DOC } }
M.define{ code = "KMS_POLICY_PCR4_NOT_INSTANCE", severity = "warn", title = "PCR4 is not the hash of the given instance id",
  message = "PCR4 from {source} is {actual}, but SHA384(48 zero bytes ‖ \"{instance_id}\") is {expected}: the enclave runs on another instance",
  remediation = { "compare with the parent's instance id: curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/instance-id" },
  refs = { doc = ATT_DOC } }
M.define{ code = "KMS_POLICY_PCR8_NOT_CERT", severity = "warn", title = "PCR8 is not that of the given certificate",
  message = "PCR8 from {source} is {actual}, the certificate {cert} gives {expected}: the EIF was signed with another certificate",
  remediation = { "nitro-cli describe-eif --eif-path <eif> (SigningCertificate) and nitro-cli pcr --signing-certificate <cert.pem>" },
  refs = { doc = ATT_DOC } }

-- ---- signed EIFs -----------------------------------------------------------------------------------------------
M.define{ code = "SIGNING_CERT_EXPIRES_SOON", severity = "warn", title = "The EIF's signing certificate expires within 30 days",
  message = "the signing certificate ({subject}) expires on {not_after}: after that run-enclave refuses this EIF with E59",
  remediation = { "issue a new signing certificate and re-sign: nitro-cli sign-eif --eif-path <eif> --private-key key.pem --signing-certificate new.pem",
    "PCR8 changes with the certificate: update kms:RecipientAttestation:PCR8 in the key policy at the same time" },
  refs = { nitro_cli = "E59", source = "aws-nitro-enclaves-image-format src/utils/mod.rs PcrSignatureChecker::verify" } }
M.define{ code = "EIF_SIGNATURE_INVALID", severity = "fail", title = "The EIF's signature does not verify",
  message = "SignatureCheck is false: {reason}",
  remediation = { "re-sign the EIF: nitro-cli sign-eif --eif-path <eif> --private-key key.pem --signing-certificate cert.pem" },
  refs = { nitro_cli = "E59" } }

return M

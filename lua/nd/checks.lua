-- nd.checks — the checks runbooks share, one function per check (NSE's nselib tier for nitrodiag): each takes the
-- step object `s` and is a step's `run`, so a runbook is a short list of steps (scripts/diag10.lua reads like the
-- seed's checklist). What a check finds comes from the registry (nd.findings); what it learns goes to s.data for the
-- steps after it (s.data.allocator, .running_before, .eifs, .predicted, .runs, .started_ids, …); what it collects
-- goes to s.bundle, which does nothing when the runbook does not collect.
--
--   nitro_cli        nitro-cli --version (required by everything after it)
--   device           /dev/nitro_enclaves and the ne group (doctor and diag10)
--   allocator        allocator.yaml, the allocator service and the hugepages it reserved (doctor and diag10)
--   artifacts_env    E51: HOME / NITRO_CLI_ARTIFACTS for build-enclave (doctor); artifacts_dir also prepares one (diag10)
--   running_enclaves the enclaves already running: listed, left alone unless args.terminate says otherwise; without
--                    a terminate argument (doctor) it only says whether the pool has room for another enclave
--   workload         the operator's run-enclave --config files
--   build_images     docker build + image lint + build-enclave, per mode in args.runs
--   predict          E26/E27 (and E20–E29) predicted for every EIF before anything runs
--   run_enclaves     each EIF run with an attached console, the vsock one pinged
--   hello            the AWS hello enclave as the control
--   collect          err logs, nitro_enclaves.log, dmesg, service states into the bundle
--   cleanup          the enclaves this run started, terminated by ID
--   imds_role, clock, kms_proxy, vsock_allowlist   doctor's KMS readiness: IMDSv2 and the role, clock skew against
--                    IMDS's Date, the KMS proxy unit and its /metrics, the region's KMS endpoint in vsock-proxy.yaml
-- The arguments the checks read are diag10's (docs/runbooks.md) and doctor's (min_memory, min_cpus: docs/doctor.md);
-- another runbook passes the same names.
local nd = require "nd"
local proc = require "nd.proc"
local host = require "nd.host"
local fs = require "nd.fs"
local json = require "nd.json"
local nitro = require "nd.nitro"
local allocator = require "nd.allocator"
local preflight = require "nd.preflight"
local errors = require "nd.nitro_errors"
local uv = require "luv"


local M = {}

local findings = require "nd.findings"
local ALLOCATOR_UNIT = findings.ALLOCATOR_UNIT
local VSOCK_PORT = 5000
-- The name prefix of the enclaves diag10 starts. Only nitrodiag uses it, so an enclave with this name that this run
-- did not start was left by an earlier run: that is what terminate=stale terminates.
local NAME_PREFIX = "nitrodiag-"
local RUNS = { "basic", "vsock", "hello", "smoke", "workload" }
local HELLO_EIF = "/usr/share/nitro_enclaves/examples/hello.eif"
M.NAME_PREFIX, M.RUNS, M.HELLO_EIF, M.VSOCK_PORT = NAME_PREFIX, RUNS, HELLO_EIF, VSOCK_PORT

-- The shipped test-image build context: a directory holding enclave/Dockerfile and the sources it compiles (core/,
-- enclave/): installed under the share directory, or the source tree itself.
local function default_context()
  for _, d in ipairs({ host.share_dir() .. "/image", host.source_dir() }) do
    if d ~= "" and fs.exists(d .. "/enclave/Dockerfile") then return d end
  end
  return nil
end

local function lines_of(text)
  local out = {}
  for l in (text or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

local function short(text, n)
  text = (text or ""):gsub("%s+$", "")
  local first = text:match("^[^\n]*") or ""
  if #first > (n or 160) then first = first:sub(1, n or 160) .. "…" end
  return first
end

-- The exact command that terminates one enclave (what a runbook prints when it could not).
local function terminate_cmd(id) return "nitro-cli terminate-enclave --enclave-id " .. id end
M.terminate_cmd = terminate_cmd

local function is_stale(e, started)
  return (e.EnclaveName or ""):sub(1, #NAME_PREFIX) == NAME_PREFIX and not started[e.EnclaveID]
end

local function human_age(secs)
  if not secs then return "age unknown" end
  secs = math.floor(secs)
  if secs < 120 then return secs .. " s" end
  if secs < 7200 then return (secs // 60) .. " min" end
  if secs < 172800 then return string.format("%.1f h", secs / 3600) end
  return string.format("%.1f days", secs / 86400)
end

-- One line about a running enclave: what is known about it.
local function describe_line(e)
  local _, age = nitro.enclave_started(e)
  return string.format("%s %s: CID %s, %s, up %s, %s CPUs %s, %s MiB, %s", tostring(e.EnclaveID),
    e.EnclaveName and ("\"" .. e.EnclaveName .. "\"") or "(no name)", tostring(e.EnclaveCID),
    e.Flags == "DEBUG_MODE" and "debug mode" or "production (not debug)", human_age(age),
    tostring(e.NumberOfCPUs), json.encode(e.CPUIDs or json.array()), tostring(e.MemoryMiB), tostring(e.State))
end

-- The pool the allocator reserved and what the running enclaves hold of it: {cpus, memory_mib, held_cpus,
-- held_mib, free_cpus, free_mib} (cpus/memory nil when allocator.yaml was not readable).
local function pool_use(cfg, list)
  local held = nitro.held(list)
  local u = { held_cpus = held.cpus, held_mib = held.memory_mib }
  if cfg then
    u.cpus = cfg.cpu_count or (cfg.pool_cpus and #cfg.pool_cpus) or nil
    u.memory_mib = cfg.memory_mib
  end
  if u.cpus then u.free_cpus = u.cpus - u.held_cpus end
  if u.memory_mib then u.free_mib = u.memory_mib - u.held_mib end
  return u
end

-- Terminates the enclaves this run started (by ID, each call bounded); returns the IDs still running.
local function terminate_ours(s, per_call)
  local d = s.data
  local failed = {}
  for _, id in ipairs(d.started_ids) do
    if not d.terminated[id] then
      local ok = nitro.terminate{ id = id, timeout = per_call or 10 }
      if ok then d.terminated[id] = true else failed[#failed + 1] = id end
    end
  end
  if #failed == 0 then return failed end
  -- terminate fails for an enclave that is already gone (its application ended): only a running one is left
  local list = nitro.describe_enclaves{ timeout = per_call or 10 }
  if not list then return failed end
  local running, left = {}, {}
  for _, e in ipairs(list) do running[e.EnclaveID] = true end
  for _, id in ipairs(failed) do
    if running[id] then left[#left + 1] = id else d.terminated[id] = true end
  end
  return left
end

-- A finding for the root cause of a nitro-cli failure, with the numbers from its text (nd.diagnose).
local function error_finding(s, record, context)
  local f = require("nd.diagnose").nitro_error(record and record.errors, context)
  if f then s:finding(f) end
  return f ~= nil
end

-- What a console log says about the enclave's life (nd.console), as findings of this step.
local function analyse_console(s, name, console, inspect)
  local res = require("nd.console").analyse(console, { name = name, inspect = inspect, expect_init = name ~= "hello" })
  for _, f in ipairs(res.findings) do s:finding(f) end
  return res.verdict
end

-- The operator's workload — what this host runs, beside diag10's own test images: nitro-cli `run-enclave --config`
-- JSON files (eif_path, memory_mib, cpu_count | cpu_ids, debug_mode, enclave_name; docker_uri/docker_dir for its
-- image), given as workload=FILE,… or found in /etc/nitrodiag/workload.d/*.json on the host (docs/runbooks.md).
-- Returns a list of { name, eif, memory, cpu_count, cpu_ids, source } (cached for the run).
local WORKLOAD_DIR = "/etc/nitrodiag/workload.d"
local function discover_workload(s)
  if s.data.workload then return s.data.workload end
  local wanted = false
  for _, r in ipairs(s.args.runs or {}) do if r == "workload" then wanted = true end end
  if not wanted then s.data.workload = {} return s.data.workload end
  local given = {}
  for _, p in ipairs(s.args.eifs or {}) do given[p] = true end
  local files = {}
  for _, p in ipairs(s.args.workload or {}) do files[#files + 1] = p end
  if #files == 0 then
    for _, f in ipairs(fs.list(s:path(WORKLOAD_DIR)) or {}) do
      if f:match("%.json$") then files[#files + 1] = WORKLOAD_DIR .. "/" .. f end
    end
  end
  local out = {}
  for _, f in ipairs(files) do
    local doc = json.decode(fs.read(s:path(f)) or "")
    if type(doc) == "table" and type(doc.eif_path) == "string" and given[doc.eif_path] then
      s:log(string.format("workload %s: %s is already given as eifs=", f, doc.eif_path))
    elseif type(doc) == "table" and type(doc.eif_path) == "string" then
      local ids = type(doc.cpu_ids) == "table" and doc.cpu_ids or nil
      out[#out + 1] = { name = doc.enclave_name or (fs.basename(doc.eif_path):gsub("%.eif$", "")), eif = doc.eif_path,
        memory = math.tointeger(doc.memory_mib), cpu_count = math.tointeger(doc.cpu_count), cpu_ids = ids, source = f,
        docker_uri = type(doc.docker_uri) == "string" and doc.docker_uri or nil,
        docker_dir = type(doc.docker_dir) == "string" and doc.docker_dir or nil }
      s:log(string.format("workload %s: %s (memory %s, %s)", f, doc.eif_path, tostring(doc.memory_mib),
        ids and ("cpu_ids " .. table.concat(ids, ",")) or ("cpu_count " .. tostring(doc.cpu_count))))
      -- its build context: the Dockerfile says what command the enclave will run (nd.imagelint)
      local dockerfile = type(doc.docker_dir) == "string" and s:path(doc.docker_dir .. "/Dockerfile")
      local okl, lint = pcall(require, "nd.imagelint")
      if dockerfile and okl and fs.exists(dockerfile) then
        local res = lint.file(dockerfile)
        for _, lf in ipairs(res and res.findings or {}) do
          if lf.severity ~= "info" then
            s:finding{ code = lf.code, severity = lf.severity, message = "workload " .. out[#out].name .. " ("
              .. doc.docker_dir .. "/Dockerfile): " .. lf.message, evidence = lf.evidence and { lf.evidence } or nil,
              remediation = lf.rule }
          end
        end
      end
    else
      s:finding{ code = "WORKLOAD_UNREADABLE", severity = "warn",
        message = f .. ": not a nitro-cli run-enclave --config JSON with eif_path" }
    end
  end
  s.data.workload = out
  return out
end

-- Runs one EIF with an attached console for run_seconds; pings it over vsock when asked. Returns a run summary.
local function run_one(s, name, eif, opts)
  local a = s.args
  local d = s.data
  local console, stderr_lines = {}, {}
  local cid, id
  local ename = NAME_PREFIX .. name
  d.started_names[ename] = true
  s:progress(string.format("%s: nitro-cli run-enclave --attach-console (%d s)", name, a.run_seconds))
  local started = nd.now()
  local ping_task, boot_s
  local function on_line(stream, line)
    if stream == "stderr" then
      stderr_lines[#stderr_lines + 1] = line
      local c = line:match("Started enclave with enclave%-cid: (%d+)")
      if c then cid = tonumber(c) end
    else
      -- "Started enclave…" comes before nitro-cli waits for the boot heartbeat (resource_manager.rs:726, :591); its
      -- JSON on stdout comes after it: how long the boot took on this host's clock
      if not boot_s then
        boot_s = nd.now() - started
        s:log(string.format("%s: started (boot heartbeat) after %.1f s", name, boot_s))
      end
      -- The run-enclave JSON comes first on stdout: remember the ID at once, so that clean-up terminates this
      -- enclave even if the run is stopped right now.
      local eid = not id and line:match('^%s*"EnclaveID"%s*:%s*"([^"]+)"')
      if eid then
        id = eid
        d.started_ids[#d.started_ids + 1] = eid
      end
      console[#console + 1] = line
      if opts.ping and not ping_task and cid and (line:find("listening on port", 1, true) or line:find("listening on vsock:", 1, true)) then
        ping_task = nd.spawn(function()
          local vsock = require "nd.vsock"
          return vsock.ping(string.format("vsock:%d:%d", cid, VSOCK_PORT), { timeout = 5 })
        end)
      end
    end
  end
  -- a run may carry its own memory and CPUs (an operator's workload); the test runs use memory= and cpu_count=
  local info, err, code, record = nitro.run_enclave{ eif = eif, memory = opts.memory or a.memory,
    cpu_count = not opts.cpu_ids and (opts.cpu_count or a.cpu_count) or nil, cpu_ids = opts.cpu_ids,
    name = ename, debug = true, attach_console = true, on_line = on_line, timeout = a.run_seconds }
  record = record or {}
  if info and info.EnclaveID and not id then
    id = info.EnclaveID
    d.started_ids[#d.started_ids + 1] = id
  end
  -- An attached console runs until we stop it: the timeout is how a good run ends.
  local run = { name = name, eif = eif, cid = cid or (info and info.EnclaveCID), console = console,
                duration = nd.now() - started, boot_s = boot_s, exit_code = record.exit_code }
  if opts.ping and not ping_task and run.cid then
    -- The enclave never said it listens: try anyway, it tells whether anything is there.
    ping_task = nd.spawn(function()
      return require("nd.vsock").ping(string.format("vsock:%d:%d", run.cid, VSOCK_PORT), { timeout = 5 })
    end)
  end
  if ping_task then
    local _, res, perr, pcode = ping_task:join()
    run.ping = res and { reply = res.reply, rtt_ms = res.rtt_ms } or { error = perr, code = pcode }
  end
  local log = {}
  for _, l in ipairs(console) do log[#log + 1] = l end
  s.bundle:add_string("run_" .. name .. ".console.log", table.concat(console, "\n") .. "\n")
  s.bundle:add_string("run_" .. name .. ".log", table.concat({
    "$ " .. table.concat(record.argv or { "nitro-cli", "run-enclave" }, " "),
    table.concat(stderr_lines, "\n"),
    string.format("%s_rc=%s", name, tostring(record.exit_code)),
    record.timed_out and string.format("# %s_rc=-1: nitrodiag stopped the attached console on purpose at the end of " ..
      "its %g s window (run_seconds); that is how a good run ends, not a failure. The enclave was then terminated.",
      name, a.run_seconds) or nil }, "\n") .. "\n")
  -- The console says what happened to the enclave; a nitro-cli error after it (E45: the console closed because the
  -- enclave went away) is then a consequence, not the cause.
  if opts.smoke then
    -- The busybox smoke image echoes one line and exits, so the enclave reboots right after it: expected here.
    local res = require("nd.console").analyse(console, { name = name, expect_init = false })
    if res.facts.smoke then
      run.verdict = "ok"
    elseif #console == 0 then
      run.verdict = "silent"
    else
      run.verdict = "no-smoke"
      s:finding{ code = "SMOKE_SILENT", severity = "fail",
        message = name .. ": the busybox smoke enclave never printed `[busybox-smoke] alive`",
        evidence = { console[#console] }, remediation = "the enclave did not run its image's command: see run_smoke.console.log" }
    end
  else
    run.verdict = analyse_console(s, name, console, opts.inspect)
  end
  local root = not info and code ~= "ETIMEDOUT" and record.errors and record.errors.root
  if root and (run.verdict ~= "ok" or opts.smoke) and run.verdict ~= "silent" and (root.code == "E45" or root.code == "E36") then
    s:finding{ code = root.code, severity = "info",
      message = string.format("%s: nitro-cli then ended with %s (%s): a consequence of the enclave going away",
        name, root.code, root.title or ""), evidence = { root.headline } }
    if run.verdict ~= "ok" then run.failed = run.verdict end
  elseif root then
    error_finding(s, record, "running " .. name)
    run.failed = root.code
  elseif not info and code ~= "ETIMEDOUT" and not record.timed_out then
    run.failed = code or "error"
    s:finding{ code = "RUN_FAILED", severity = "fail", message = name .. ": run-enclave failed: " .. short(err),
               evidence = stderr_lines }
  end
  -- Terminate what this run started so the next one has the CPUs (the run may outlive its console): by its ID,
  -- never --all, which would stop enclaves this run did not start.
  if not id and (run.cid or info) then
    for _, e in ipairs(nitro.describe_enclaves() or {}) do
      if e.EnclaveName == ename or (run.cid and e.EnclaveCID == run.cid) then
        id = e.EnclaveID
        d.started_ids[#d.started_ids + 1] = id
      end
    end
  end
  if id and not d.terminated[id] then terminate_ours(s, 20) end
  run.id = id
  return run
end


-- step "nitro-cli"
function M.nitro_cli(s)
  -- what this run starts: the IDs and names of its test enclaves, and which of them are terminated
  s.data.started_ids, s.data.started_names, s.data.terminated = {}, {}, {}
  local r, err = proc.run{ host.nitro_cli(), "--version", timeout = 10 }
  if not r then
    s:finding{ code = "NITRO_CLI_MISSING", severity = "fail", message = "nitro-cli is not available: " .. err,
      remediation = "install aws-nitro-enclaves-cli (on Amazon Linux 2023 also aws-nitro-enclaves-cli-devel; " ..
        "there is no separate allocator package there)" }
    return
  end
  s.data.nitro_cli_version = short(r.stdout)
  s.bundle:add_string("nitro_cli_version.txt", r.stdout .. r.stderr)
  s:ok(s.data.nitro_cli_version)
end

-- /etc/group under the root: name -> {gid, members}
local function read_groups(s)
  local groups = {}
  for line in (fs.read(s:path("/etc/group")) or ""):gmatch("[^\n]+") do
    local name, gid, members = line:match("^([^:]*):[^:]*:(%d+):(.*)$")
    if name then
      local m = {}
      for u in members:gmatch("[^,]+") do m[u] = true end
      groups[name] = { gid = tonumber(gid), members = m }
    end
  end
  return groups
end

-- step "device" (doctor: "device and group"): the device, and whether this user may open it (nitro-cli E19).
function M.device(s)
  local st = uv.fs_stat(s:path("/dev/nitro_enclaves"))
  if not st then
    s:finding{ code = "DEVICE_MISSING", severity = "fail",
      message = "/dev/nitro_enclaves is missing: the Nitro Enclaves driver is not loaded (nitro-cli fails with E19)",
      evidence = { "stat /dev/nitro_enclaves: no such file" },
      remediation = "load the driver (modprobe nitro_enclaves) on an instance type with enclave support enabled " ..
        "(EnclaveOptions.Enabled=true at launch)" }
    return
  end
  local ne = read_groups(s).ne
  -- the uid from the kernel: the passwd entry only names it (a container or an empty root may have no /etc/passwd)
  local user = uv.os_get_passwd()
  local uid = user and user.uid or uv.getuid()
  local username = user and user.username or ("uid " .. uid)
  local member = uid == 0 or (ne and ne.members[username]) or false
  if not ne then
    s:finding{ code = "GROUP_NE_MISSING", severity = "warn", message = "there is no `ne` group: only root can use /dev/nitro_enclaves",
      remediation = "install aws-nitro-enclaves-cli (it creates the group), then: usermod -aG ne <user>" }
  elseif not member then
    s:finding{ code = "NOT_IN_NE_GROUP", severity = "fail",
      message = string.format("user %s is not in group ne: nitro-cli fails with E19 on /dev/nitro_enclaves", username),
      remediation = "sudo usermod -aG ne " .. username .. " and log in again" }
  end
  s:ok(string.format("/dev/nitro_enclaves present (mode %o, gid %d); user %s%s", st.mode & tonumber("777", 8),
    st.gid, username, member and " may use it" or ""))
end

-- service_state(unit) -> "active", "inactive", "failed", … ("unknown" when systemctl cannot say)
local function service_state(unit)
  local r = proc.run{ "systemctl", "is-active", unit, timeout = 10 }
  return r and r.stdout:match("^(%S+)") or "unknown"
end

-- The hugepages the kernel holds (MiB, the sum over /sys/kernel/mm/hugepages/*/nr_hugepages; s.data.hugepages_mib),
-- and whether any size is there at all.
local function hugepages_mib(s)
  local total = 0
  local dirs = fs.list(s:path("/sys/kernel/mm/hugepages")) or {}
  for _, d in ipairs(dirs) do
    local kb = tonumber(d:match("hugepages%-(%d+)kB"))
    local nr = tonumber(fs.read(s:path("/sys/kernel/mm/hugepages/" .. d .. "/nr_hugepages")) or "")
    if kb and nr then total = total + nr * kb // 1024 end
  end
  s.data.hugepages_mib = total
  return total, #dirs > 0
end

-- step "allocator": allocator.yaml as the service reads it (s.data.allocator), the service, the sizes against
-- args.min_memory/min_cpus when the runbook has them (doctor), and the hugepages the kernel really holds: the
-- allocator can report success after failing to reserve.
function M.allocator(s)
  local a = s.args
  local cfg, text_or_err, code = allocator.load()
  if not cfg then
    s:finding{ code = "ALLOCATOR_CONFIG", severity = "fail", message = "allocator.yaml: " .. tostring(text_or_err),
      evidence = { allocator.PATH .. ": " .. tostring(code) },
      remediation = "fix " .. allocator.PATH .. " (nitrodiag allocator shows and edits it: nitrodiag allocator " ..
        "memory_mib=… cpu_count=…) and restart " .. ALLOCATOR_UNIT }
  else
    s.data.allocator = cfg
    s.bundle:add_string("allocator.yaml", text_or_err)
  end
  local state = service_state(ALLOCATOR_UNIT)
  s.bundle:add_command("allocator_service.status", { "systemctl", "status", "--no-pager", ALLOCATOR_UNIT }, { timeout = 10 })
  s.bundle:add_journal(ALLOCATOR_UNIT, { lines = 200 })
  if state ~= "active" then
    s:finding{ code = "ALLOCATOR_INACTIVE", severity = "fail",
      message = ALLOCATOR_UNIT .. " is " .. state .. ": no memory or CPUs are reserved for enclaves",
      evidence = { "systemctl is-active " .. ALLOCATOR_UNIT .. ": " .. state },
      remediation = "sudo systemctl start " .. ALLOCATOR_UNIT .. " && sudo systemctl enable " .. ALLOCATOR_UNIT ..
        "; if it fails, see journalctl -u " .. ALLOCATOR_UNIT }
  end
  if not cfg then return end
  local cpus = cfg.cpu_count or (cfg.pool_cpus and #cfg.pool_cpus) or 0
  if a.min_memory and (cfg.memory_mib or 0) < a.min_memory then
    s:finding{ code = "ALLOCATOR_MEMORY_LOW", severity = "warn",
      message = string.format("allocator reserves %d MiB, less than %d MiB", cfg.memory_mib or 0, a.min_memory),
      remediation = string.format("nitrodiag allocator memory_mib=%d", a.min_memory) }
  end
  if a.min_cpus and cpus < a.min_cpus then
    s:finding{ code = "ALLOCATOR_CPUS_LOW", severity = "warn",
      message = string.format("allocator reserves %d CPUs, less than %d", cpus, a.min_cpus),
      remediation = string.format("nitrodiag allocator cpu_count=%d", a.min_cpus) }
  end
  local huge, sized = hugepages_mib(s)
  if sized and state == "active" and huge < (cfg.memory_mib or 0) then
    s:finding{ code = "HUGEPAGES_SHORT", severity = "fail",
      message = string.format("the kernel holds %d MiB of hugepages but allocator.yaml asks for %d MiB", huge, cfg.memory_mib),
      evidence = { "sum of /sys/kernel/mm/hugepages/*/nr_hugepages" },
      remediation = "memory is fragmented or too small: restart the allocator (or reboot), or lower memory_mib" }
  end
  if state == "active" then
    s:ok(string.format("active: %s MiB, %s%s", tostring(cfg.memory_mib),
      cfg.cpu_pool and ("cpu_pool " .. cfg.cpu_pool) or (tostring(cpus) .. " CPUs"),
      sized and string.format("; hugepages %d MiB", huge) or ""))
  end
end

-- E51: build-enclave needs NITRO_CLI_ARTIFACTS or HOME for its artifacts (nitro-cli src/lib.rs artifacts_path):
-- under SSM there is no HOME. Returns what it would use ("NITRO_CLI_ARTIFACTS=…", "HOME=…"), or nil.
local function artifacts_path()
  local dir = host.getenv("NITRO_CLI_ARTIFACTS")
  if dir and dir ~= "" then return "NITRO_CLI_ARTIFACTS=" .. dir end
  local home = host.getenv("HOME")
  if home then return "HOME=" .. home .. " (artifacts in " .. home .. "/.nitro_cli)" end
  return nil
end

-- step "artifacts path (E51)" of doctor: would build-enclave fail with E51 here?
function M.artifacts_env(s)
  local using = artifacts_path()
  if using then s:ok(using) return end
  s:finding{ code = "ARTIFACTS_PATH_UNSET", severity = "warn",
    message = "neither HOME nor NITRO_CLI_ARTIFACTS is set (as under SSM): nitro-cli build-enclave fails here with E51",
    remediation = "export NITRO_CLI_ARTIFACTS=/tmp/nitro-cli-artifacts (or HOME=/root) before build-enclave" }
end

-- step "artifacts path (E51)" of diag10, which builds: unless NITRO_CLI_ARTIFACTS is set, build-enclave gets a
-- directory of this run's own (removed by cleanup), so it cannot fail with E51.
function M.artifacts_dir(s)
  local using = artifacts_path()
  if using and using:match("^NITRO_CLI_ARTIFACTS=") then s:ok(using) return end
  local dir = fs.tmpdir("nitrodiag-artifacts")
  host.setenv("NITRO_CLI_ARTIFACTS", dir)
  s.data.artifacts_dir = dir
  if not using then
    s:finding{ code = "ARTIFACTS_PATH_UNSET", severity = "info",
      message = "HOME is not set (as under SSM): set NITRO_CLI_ARTIFACTS=" .. dir .. " so build-enclave cannot fail with E51",
      remediation = "in your own scripts: export NITRO_CLI_ARTIFACTS=/tmp/nitro-cli-artifacts (or HOME=/root)" }
  end
  s:ok("NITRO_CLI_ARTIFACTS=" .. dir)
end

-- The enclaves already running: what they are and whether they hold what this run needs. diag10 terminates
-- none of them unless terminate=stale|all says so or the operator says yes at the prompt.
-- step "running enclaves"
-- Without a terminate argument (doctor) it only reports: enclaves not RUNNING, and a pool so fully held that another
-- run-enclave would fail (E29/E27), naming the holders.
function M.running_enclaves(s)
  local a, d = s.args, s.data
  local list, err, code = nitro.describe_enclaves()
  if not list then
    s:finding{ code = code == "EBADMSG" and "DESCRIBE_NOT_JSON" or "DESCRIBE_FAILED", severity = "fail",
      message = "nitro-cli describe-enclaves: " .. short(err),
      remediation = code == "ENOENT" and "install aws-nitro-enclaves-cli" or "see the error log it names" }
    return
  end
  s.bundle:add_json("describe_enclaves.before.json", list)
  local odd, odd_ids = {}, {}
  for _, e in ipairs(list) do
    if e.State ~= "RUNNING" then
      odd[#odd + 1] = e.EnclaveID .. " " .. tostring(e.State)
      odd_ids[#odd_ids + 1] = "nitrodiag cleanup id=" .. e.EnclaveID
    end
  end
  if #odd > 0 then
    s:finding{ code = "ENCLAVES_NOT_RUNNING", severity = "warn", message = #odd .. " enclave(s) not RUNNING", evidence = odd,
      remediation = "terminate them: " .. table.concat(odd_ids, "; ") }
  end
  if #list == 0 then s:ok("none running") return end
  local ev, line_of = {}, {}
  for _, e in ipairs(list) do
    ev[#ev + 1] = describe_line(e)
    line_of[e.EnclaveID] = ev[#ev]
  end
  local use = pool_use(d.allocator or allocator.load(), list)
  -- what one more enclave needs: this run's (diag10), or anything at all (doctor)
  local need_cpus, need_mib = a.cpu_count or 1, a.memory or 1
  local function blocked(u)
    return (u.free_cpus and u.free_cpus < need_cpus) or (u.free_mib and u.free_mib < need_mib)
  end
  if a.terminate == nil then
    d.running_before = list
    if blocked(use) then
      local ids = {}
      for _, e in ipairs(list) do ids[#ids + 1] = e.EnclaveID end
      local full_cpus = use.free_cpus and use.free_cpus < need_cpus
      s:finding{ code = "ENCLAVES_HOLD_POOL", severity = "warn",
        message = string.format("the enclave pool is fully held: %d enclave(s) hold %d of %s CPUs and %d of %s MiB; " ..
          "another run-enclave fails (%s) until one of them stops", #list, use.held_cpus, tostring(use.cpus or "?"),
          use.held_mib, tostring(use.memory_mib or "?"),
          full_cpus and "E29: no CPUs are available in the pool" or "E27: not enough memory"),
        evidence = ev,
        remediation = "if that is expected (your workload uses the whole pool), nothing to do; if one of them is " ..
          "stale: nitrodiag cleanup id=<its EnclaveID: " .. table.concat(ids, " | ") .. ">; otherwise grow the pool: " ..
          "nitrodiag allocator cpu_count=…/memory_mib=…" }
      s:ok(#list .. " enclave(s); the pool is fully held")
    else
      s:finding{ code = "ENCLAVES_RUNNING", severity = "info",
        message = string.format("%d enclave(s) running: they hold %d CPUs and %d MiB", #list, use.held_cpus, use.held_mib),
        evidence = ev }
      s:ok(#list .. " enclave(s)")
    end
    return
  end
  local function holds(u)
    return string.format("they hold %d of %s pool CPUs and %d of %s MiB; each run needs %d CPUs and %d MiB",
      u.held_cpus, tostring(u.cpus or "?"), u.held_mib, tostring(u.memory_mib or "?"), a.cpu_count, a.memory)
  end
  -- Which ones to terminate: as asked, or (on a terminal, when they are in the way) as the operator answers.
  local targets = {}
  for _, e in ipairs(list) do
    if a.terminate == "all" or (a.terminate == "stale" and is_stale(e, {})) then targets[#targets + 1] = e end
  end
  if #targets == 0 and blocked(use) and s.interactive then
    for _, l in ipairs(ev) do s.out:note("  running: " .. l) end
    local yes = s:ask(string.format("%d enclave(s) hold what diag10 needs (%s). Terminate them all?", #list,
      holds(use)))
    if yes then targets = list end
  end
  local terminated, failed = {}, {}
  for _, e in ipairs(targets) do
    s:progress("terminate-enclave " .. e.EnclaveID)
    local ok, terr = nitro.terminate{ id = e.EnclaveID, timeout = 20 }
    if ok then terminated[#terminated + 1] = line_of[e.EnclaveID]
    else failed[#failed + 1] = "terminate " .. e.EnclaveID .. " failed: " .. short(terr) end
  end
  if #terminated > 0 then
    list = nitro.describe_enclaves() or list
    use = pool_use(d.allocator, list)
    local all_ev = {}
    for _, l in ipairs(terminated) do all_ev[#all_ev + 1] = "terminated: " .. l end
    for _, l in ipairs(failed) do all_ev[#all_ev + 1] = l end
    s:finding{ code = "STALE_ENCLAVES", severity = #failed == 0 and "warn" or "fail",
      message = string.format("terminated %d enclave(s) this run did not start (terminate=%s)", #terminated,
        a.terminate ~= "none" and a.terminate or "confirmed at the prompt"),
      evidence = all_ev,
      remediation = "stale enclaves keep the CPU pool (E29 \"no CPUs are available in the pool\", then E39): make your deployment " ..
        "terminate the enclaves it replaces" }
  end
  d.running_before = list
  if #list == 0 then s:ok("none left running") return end
  ev = {}
  for _, e in ipairs(list) do ev[#ev + 1] = line_of[e.EnclaveID] or describe_line(e) end
  if blocked(use) then
    d.pool_blocked = string.format("%d running enclave(s) hold the CPU pool or memory this run needs", #list)
    local cmds = {}
    for _, e in ipairs(list) do cmds[#cmds + 1] = terminate_cmd(e.EnclaveID) end
    s:fail(string.format("%d enclave(s) this run did not start hold the pool: test runs not started", #list))
    s:finding{ code = "ENCLAVES_HOLD_POOL", severity = "fail",
      message = string.format("%d enclave(s) this run did not start are running: %s, so the test runs cannot " ..
        "start (they would fail with E29/E39); diag10 left them alone and does not run its test enclaves", #list,
        holds(use)),
      evidence = ev,
      remediation = "if they are stale, rerun with terminate=stale (those named " .. NAME_PREFIX .. "*, left by " ..
        "nitrodiag) or terminate=all, or terminate the ones you know are stale: " .. table.concat(cmds, "; ") }
    return
  end
  s:finding{ code = "ENCLAVES_RUNNING", severity = "info",
    message = string.format("%d enclave(s) this run did not start are running and were left alone; %d CPUs and " ..
      "%s MiB of the pool stay free for the test runs", #list, use.free_cpus or 0, tostring(use.free_mib or "?")),
    evidence = ev }
  s:ok(string.format("%d running (left alone); the pool has room for the test runs", #list))
end

-- step "workload": the operator's enclaves. One that names its image (docker_uri, and docker_dir for its build
-- context) is built the way the operator builds it (nitro-cli build-enclave --docker-uri [--docker-dir]) and the
-- EIF just built is what the later steps check and run, so diag10 sees what building that image gives today; one
-- without an image (an EIF from elsewhere, a signed one) runs as given. build=false runs the given EIFs.
function M.workload(s)
  local w = discover_workload(s)
  if #w == 0 then s:skip("none on this host (" .. WORKLOAD_DIR .. "/*.json or workload=)") end
  local names, built, failed = {}, 0, 0
  for _, x in ipairs(w) do
    names[#names + 1] = x.name
    if x.docker_uri and s.args.build ~= false and not x.built then
      s.data.workload_eif_dir = s.data.workload_eif_dir or fs.tmpdir("nitrodiag-workload")
      local eif = s.data.workload_eif_dir and M.build_eif(s, "workload-" .. x.name, x.docker_uri, s.data.workload_eif_dir,
        x.docker_dir)
      if eif then
        s:log(string.format("workload %s: built %s from %s; it runs instead of %s", x.name, eif, x.docker_uri, x.eif))
        x.given_eif, x.eif, x.local_file, x.built = x.eif, eif, true, true
        built = built + 1
      else
        failed = failed + 1
      end
    end
  end
  if failed > 0 then return end -- build_eif reported the cause
  s:ok(#w .. " enclave(s) of this host to run: " .. table.concat(names, ", ")
    .. (built > 0 and string.format(" (%d built from its image)", built) or ""))
end

-- docker build of the test image for one mode (basic/vsock: the vsock-pingpong Dockerfile with MODE=; smoke: the
-- busybox one). Returns true, or false after a DOCKER_BUILD_FAILED finding.
function M.docker_build(s, mode, tag, ctxdir)
  s:progress("docker build " .. tag)
  local file = mode == "smoke" and "Dockerfile.smoke" or "Dockerfile"
  local dockerfile = fs.exists(ctxdir .. "/enclave/" .. file) and (ctxdir .. "/enclave/" .. file) or (ctxdir .. "/" .. file)
  local argv = { "docker", "build", "--build-arg", "MODE=" .. mode, "-t", tag, "-f", dockerfile, ctxdir }
  if mode == "smoke" then argv = { "docker", "build", "-t", tag, "-f", dockerfile, ctxdir } end
  argv.timeout = 90
  local r, err = proc.run(argv)
  argv.timeout = nil
  s.bundle:add_string("build_" .. mode .. ".docker.log", "$ " .. table.concat(argv, " ") .. "\n" ..
    (r and (r.stdout .. r.stderr .. "\nexit " .. r.exit_code) or tostring(err)) .. "\n")
  if not r or r.exit_code ~= 0 then
    s:finding{ code = "DOCKER_BUILD_FAILED", severity = "fail", message = "docker build of " .. tag .. " failed",
      evidence = lines_of(r and r.stderr or err), remediation = "see build_" .. mode .. ".docker.log in the bundle" }
    return false
  end
  return true
end

-- docker inspect + the image lint (nd.imagelint: no `/bin/sh -c`, an explicit ENTRYPOINT). Returns the image's
-- Config (kept as s.data["inspect_" .. mode]) and whether the lint failed, or nil after a DOCKER_IMAGE_NOT_FOUND
-- finding.
function M.image_lint(s, mode, tag)
  local r = proc.run{ "docker", "inspect", tag, timeout = 20 }
  if not r or r.exit_code ~= 0 then
    s:finding{ code = "DOCKER_IMAGE_NOT_FOUND", severity = "fail", message = "docker inspect " .. tag .. " failed",
               evidence = lines_of(r and r.stderr or "") }
    return nil
  end
  s.bundle:add_string("docker_inspect_" .. mode .. ".json", r.stdout)
  local doc = json.decode(r.stdout)
  local inspect = doc and doc[1] and doc[1].Config
  s.data["inspect_" .. mode] = inspect
  s:log(string.format("%s: Entrypoint=%s Cmd=%s", tag, json.encode(inspect and inspect.Entrypoint or json.null),
    json.encode(inspect and inspect.Cmd or json.null)))
  local lint_failed = false
  local okl, lint = pcall(require, "nd.imagelint")
  if okl then
    local res = lint.inspect(r.stdout)
    for _, f in ipairs(res and res.findings or {}) do
      if f.severity ~= "info" then
        lint_failed = lint_failed or f.severity == "fail"
        s:finding(findings.lint(f, tag .. ": "))
      end
    end
  end
  return inspect or {}, lint_failed
end

-- nitro-cli build-enclave of one image into outdir/<mode>.eif. Returns the EIF path, or nil after a finding for
-- the root cause of the failure.
function M.build_eif(s, mode, tag, outdir, docker_dir)
  s:progress("nitro-cli build-enclave " .. tag)
  local eif = outdir .. "/" .. mode .. ".eif"
  local blog = {}
  local m, err, code, record = nitro.build_enclave{ docker_uri = tag, docker_dir = docker_dir, output = eif, timeout = 100,
    on_line = function(_, line) blog[#blog + 1] = line end }
  s.bundle:add_string("build_" .. mode .. ".eif.log", table.concat(blog, "\n") .. "\n")
  if not m then
    if not error_finding(s, record, "building the " .. mode .. " EIF") then
      s:finding{ code = findings.get(code or "") and code or "E48", severity = "fail", message = "build-enclave " .. tag .. " failed: " .. short(err) }
    end
    return nil
  end
  local pcr = m.Measurements or {}
  s:log(string.format("%s: PCR0 %s", eif, tostring(pcr.PCR0)))
  s.bundle:add_json("eif_" .. mode .. ".measurements.json", m)
  return eif
end

-- step "build images": per mode in args.runs (basic, vsock, smoke), the image (docker build unless build=false),
-- its lint, and its EIF (s.data.eifs[mode]).
function M.build_images(s)
  local a = s.args
  s.data.eifs = {}
  local modes = {}
  for _, r in ipairs(a.runs) do if r == "basic" or r == "vsock" or r == "smoke" then modes[#modes + 1] = r end end
  if #modes == 0 then s:skip("no basic/vsock/smoke run asked for") end
  local ctxdir = a.context or default_context()
  if a.build and not ctxdir then
    s:fail("no image context: the shipped enclave/Dockerfile was not found; pass context=DIR or build=false")
    return
  end
  local outdir = fs.tmpdir("nitrodiag-eif")
  s.data.eif_dir = outdir
  local built, lint_failed = 0, false
  for _, mode in ipairs(modes) do
    local tag = a.image .. ":" .. mode
    if not a.build or M.docker_build(s, mode, tag, ctxdir) then
      local inspect, failed = M.image_lint(s, mode, tag)
      lint_failed = lint_failed or failed
      local eif = inspect and M.build_eif(s, mode, tag, outdir)
      if eif then
        s.data.eifs[mode] = eif
        built = built + 1
      end
    end
  end
  if built == #modes then
    s:ok(string.format("%d image(s) and EIF(s) built%s", built, lint_failed and " (the image lint failed)" or ""))
  end
end

-- One finding per cause (E26, E27, …) naming the EIFs it concerns as the operator knows them (the test EIFs by
-- their run, the operator's by the path given); a run predicted to fail is not started.
-- step "predict E26/E27"
function M.predict(s)
  local a = s.args
  local targets = {}
  s.data.predicted = {}
  for mode, path in pairs(s.data.eifs or {}) do
    targets[#targets + 1] = { name = mode, eif = path, label = "the " .. mode .. " test EIF", local_file = true }
  end
  for _, p in ipairs(a.eifs) do
    targets[#targets + 1] = { name = (fs.basename(p):gsub("%.eif$", "")), eif = p, label = p }
  end
  for _, w in ipairs(discover_workload(s)) do
    targets[#targets + 1] = { name = w.name, eif = w.eif, label = (w.given_eif and ("the EIF built from " .. w.docker_uri)
      or w.eif) .. " (workload " .. w.source .. ")", memory = w.memory, cpu_count = w.cpu_count, cpu_ids = w.cpu_ids,
      local_file = w.local_file }
  end
  local want_hello = false
  for _, r in ipairs(a.runs) do if r == "hello" then want_hello = true end end
  if want_hello and a.hello_eif and fs.exists(s:path(a.hello_eif)) then
    targets[#targets + 1] = { name = "hello", eif = a.hello_eif, label = a.hello_eif }
  end
  if #targets == 0 then s:skip("no EIF to check") end
  table.sort(targets, function(x, y) return x.name < y.name end)
  local causes, order, unreadable = {}, {}, 0
  for _, t in ipairs(targets) do
    local path = t.local_file and t.eif or s:path(t.eif)
    local memory = t.memory or a.memory
    local res, err = preflight.check{ eif = path, memory = memory, cpu_ids = t.cpu_ids,
      cpu_count = not t.cpu_ids and (t.cpu_count or a.cpu_count) or nil }
    if not res then
      s:finding{ code = "EIF_UNREADABLE", severity = "fail", message = t.label .. ": " .. tostring(err) }
      s.data.predicted[t.name] = "EIF_UNREADABLE"
      unreadable = unreadable + 1
    else
      s:log(string.format("%s: %d bytes, needs ≥ %d MiB; allocator %s MiB free (%s)", t.label, res.eif_size,
        res.min_memory_mib, tostring(res.memory_free_mib), res.memory_source))
      for _, issue in ipairs(res.issues or {}) do
        local c = causes[issue.code]
        if not c then
          c = { code = issue.code, items = {}, issue = issue }
          causes[issue.code] = c
          order[#order + 1] = issue.code
        end
        c.items[#c.items + 1] = { t = t, res = res, issue = issue, memory = memory }
        s.data.predicted[t.name] = s.data.predicted[t.name] or issue.code
      end
    end
  end
  for _, code in ipairs(order) do
    local c = causes[code]
    local labels, ev, need, asked = {}, {}, 0, 0
    for _, it in ipairs(c.items) do
      labels[#labels + 1] = it.t.label
      need = math.max(need, it.res.min_memory_mib or 0)
      asked = math.max(asked, it.memory)
      ev[#ev + 1] = string.format("%s: %.0f MiB EIF, needs --memory ≥ %d, given %d: %s", it.t.label,
        it.res.eif_size / 1048576, it.res.min_memory_mib, it.memory, it.issue.headline or it.issue.message or code)
    end
    local msg, fix
    if code == "E26" then
      msg = string.format("predicted E26 for %s: run-enclave needs --memory ≥ %d (4 × the EIF size); memory=%d " ..
        "is too little, so %s not started", table.concat(labels, ", "), need, asked,
        #labels == 1 and "that run is" or "those runs are")
      fix = string.format("run with memory=%d or more (the 4× rule), and keep allocator.yaml memory_mib ≥ %d",
        need, need)
    elseif code == "E27" then
      msg = string.format("predicted E27 for %s: memory=%d MiB is more than the %s MiB the allocator reserved, " ..
        "so %s not started", table.concat(labels, ", "), asked, tostring(c.issue.limit),
        #labels == 1 and "that run is" or "those runs are")
      fix = string.format("raise memory_mib in %s to ≥ %d and restart %s (nitrodiag allocator memory_mib=%d)",
        allocator.PATH, asked, ALLOCATOR_UNIT, asked)
    else
      msg = string.format("predicted %s for %s: %s", code, table.concat(labels, ", "), tostring(c.issue.message))
      fix = table.concat((errors.get(code) or {}).remediation or {}, "; ")
    end
    -- the cause's registry code (E26 -> ENCLAVE_MEMORY_BELOW_EIF …), this run's numbers in the message
    local pf = findings.preflight(c.issue)
    pf.message, pf.severity, pf.evidence = msg, "fail", ev
    pf.remediation = fix .. (pf.remediation and ("; " .. pf.remediation) or "")
    s:finding(pf)
  end
  if #order == 0 and unreadable == 0 then
    s:ok(#targets .. " EIF(s) fit memory=" .. a.memory .. " and the allocator")
  end
  s.data.targets = targets
end

-- step "run enclaves"
function M.run_enclaves(s)
  local a = s.args
  local plan, held_back = {}, {}
  local function add(p)
    local why = s.data.predicted and s.data.predicted[p.name]
    if why then held_back[#held_back + 1] = p.name .. " (" .. why .. ")" else plan[#plan + 1] = p end
  end
  for _, r in ipairs(a.runs) do
    if (r == "basic" or r == "vsock" or r == "smoke") and s.data.eifs and s.data.eifs[r] then
      add{ name = r, eif = s.data.eifs[r], ping = r == "vsock", smoke = r == "smoke", inspect = s.data["inspect_" .. r] }
    end
  end
  for _, p in ipairs(a.eifs) do add{ name = (fs.basename(p):gsub("%.eif$", "")), eif = p } end
  for _, w in ipairs(discover_workload(s)) do
    add{ name = w.name, eif = w.eif, memory = w.memory, cpu_count = w.cpu_count, cpu_ids = w.cpu_ids }
  end
  if s.data.pool_blocked then s:skip("not run: " .. s.data.pool_blocked .. " (see 'running enclaves')") end
  if #plan == 0 then
    s:skip(#held_back > 0 and ("not run: predicted to fail: " .. table.concat(held_back, ", "))
      or "nothing to run (no EIF was built)")
  end
  s.data.runs = {}
  local bad = 0
  for _, p in ipairs(plan) do
    local run = run_one(s, p.name, p.eif, p)
    s.data.runs[#s.data.runs + 1] = run
    local verdict = run.failed and "failed" or run.verdict
    if p.ping then
      if run.ping and run.ping.reply == "pong" then
        s:log(string.format("%s: vsock ping CID %s port %d: pong in %.1f ms", p.name, tostring(run.cid), VSOCK_PORT, run.ping.rtt_ms))
      elseif not run.failed and verdict == "ok" then
        s:finding{ code = "VSOCK_NO_PONG", severity = "fail",
          message = string.format("%s: no pong from CID %s port %d: %s", p.name, tostring(run.cid), VSOCK_PORT,
            run.ping and (run.ping.error or ("reply " .. tostring(run.ping.reply))) or "the enclave never got a CID"),
          remediation = "check the console for the listener line; vsock needs the enclave running and listening on port 5000" }
        verdict = "no-pong"
      end
    end
    if verdict ~= "ok" then bad = bad + 1 end
    s:log(string.format("%s: %s, %d console lines, %.1f s", p.name, verdict, #run.console, run.duration))
  end
  if bad == 0 then
    s:ok(#plan .. " run(s) came up" .. ((s.data.runs[2] or s.data.runs[1] or {}).ping and ", vsock ping answered" or "") ..
      (#held_back > 0 and ("; not run (predicted to fail): " .. table.concat(held_back, ", ")) or ""))
  end
end

-- step "hello control"
function M.hello(s)
  local a = s.args
  if not fs.exists(s:path(a.hello_eif)) then
    s:skip("the AWS hello enclave is not installed (" .. a.hello_eif .. ", from aws-nitro-enclaves-cli-devel)")
  end
  if s.data.pool_blocked then s:skip("not run: " .. s.data.pool_blocked .. " (see 'running enclaves')") end
  local why = s.data.predicted and s.data.predicted.hello
  if why then s:skip("not run: predicted to fail with " .. why) end
  local run = run_one(s, "hello", a.hello_eif, {})
  if run.failed or run.verdict ~= "ok" and run.verdict ~= "silent" then return end
  if #run.console == 0 then
    s:finding{ code = "HELLO_SILENT", severity = "warn", message = "the hello enclave printed nothing on its console" }
  else
    s:ok(string.format("hello ran: %d console lines", #run.console))
  end
end

-- step "collect": each artifact succeeds or fails on its own (one that raises is recorded with why, the others
-- still come).
function M.collect(s)
  local b = s.bundle
  if not s.collecting then s:skip("no bundle for this run") end
  local failed = 0
  local function each(name, f)
    local ok, e = pcall(f)
    if not ok then
      failed = failed + 1
      b:record(name, { status = "error", error = tostring(e) })
    end
  end
  each("err*.log", function() b:add_glob("/var/log/nitro_enclaves/err*.log", { prefix = "" }) end)
  local list = {}
  for _, e in ipairs(b:entries()) do
    if e.status == "ok" and e.glob == "/var/log/nitro_enclaves/err*.log" then list[#list + 1] = e.source or e.name end
  end
  each("err_logs.list", function() b:add_string("err_logs.list", table.concat(list, "\n") .. "\n") end)
  each("nitro_enclaves.log.tail", function()
    b:add_file("nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", { tail_lines = 250 })
  end)
  each("dmesg.tail", function() b:add_dmesg({ lines = 220 }) end)
  each("vsock_proxy_service.status", function()
    b:add_command("vsock_proxy_service.status", { "systemctl", "status", "--no-pager", "nitro-enclaves-vsock-proxy.service" }, { timeout = 10 })
  end)
  each("journal_kms-proxy-host.log", function() b:add_journal("kms-proxy-host", { lines = 500 }) end)
  each("describe_enclaves.json", function()
    local after, derr = nitro.describe_enclaves()
    if after then
      b:add_json("describe_enclaves.json", after)
    else
      b:record("describe_enclaves.json", { status = "error", kind = "command", source = "nitro-cli describe-enclaves",
                                           error = "describe-enclaves failed: " .. short(derr) })
    end
  end)
  -- what enclaves said over the log channel (nitrodiag-init --log → nitrodiag-logd), debug mode or not
  each("enclave_logs/*.log", function()
    b:add_glob("/var/log/nitrodiag/enclaves/*.log", { prefix = "enclave_logs/", tail_lines = 2000 })
  end)
  each("journal_nitrodiag-logd.log", function() b:add_journal("nitrodiag-logd", { lines = 500 }) end)
  -- err logs written during this run: their root cause, read back
  local roots = {}
  for _, p in ipairs(list) do
    local okp, parsed = pcall(nitro.read_err_log, p)
    if not okp then parsed = nil end
    if parsed and parsed.recognised then
      roots[#roots + 1] = string.format("%s: %s (%s:%s)", fs.basename(p), parsed.action or "?", parsed.root_file or "?",
        tostring(parsed.root_line))
    end
  end
  if #roots > 0 then s:log("err logs:\n" .. table.concat(roots, "\n")) end
  if failed > 0 then
    s:warn(string.format("%d err log(s) collected; %d artifact(s) could not be (see the manifest)", #list, failed))
  else
    s:ok(string.format("%d err log(s), logs, dmesg and service states collected", #list))
  end
end

-- ---- doctor's KMS-readiness checks ------------------------------------------------------------------------

local VSOCK_PROXY_YAML = "/etc/nitro_enclaves/vsock-proxy.yaml"
local function http() return require "nd.http" end -- loaded when a check needs it (libcurl)

local function imds_base(args)
  return (args.imds or host.getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254"):gsub("/+$", "")
end

-- HTTP Date (RFC 7231: "Sun, 22 Nov 2026 20:00:00 GMT") -> epoch seconds
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local function http_date(s)
  local d, mon, y, hh, mm, ss = (s or ""):match("%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
  if not d or not MONTHS[mon] then return nil end
  -- days from civil (Howard Hinnant), UTC without os.time's local-time conversion
  local yy, m = tonumber(y), MONTHS[mon]
  if m <= 2 then yy = yy - 1 end
  local era = yy // 400
  local yoe = yy - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + tonumber(d) - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

-- step "IMDSv2 and role" (doctor): an IMDSv2 token (its Date is kept as s.data.imds_date for the clock), the region
-- (s.data.region) and the instance role's credentials, which are never kept or printed.
function M.imds_role(s)
  if s.sim and not s.args.imds then s:skip("no instance metadata on the simulated host (pass imds=URL)") end
  local base = imds_base(s.args)
  local tok, err, code = http().request{ method = "PUT", url = base .. "/latest/api/token", timeout = 2,
    headers = { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" } }
  if not tok or tok.status ~= 200 then
    s:finding{ code = "IMDS_UNREACHABLE", severity = "fail",
      message = "IMDSv2 token request failed: " .. (tok and ("HTTP " .. tok.status) or tostring(err)),
      evidence = { "PUT " .. base .. "/latest/api/token" },
      remediation = "check the instance metadata options (HttpEndpoint enabled, HttpPutResponseHopLimit ≥ 1; 2 in containers)" }
    return
  end
  s.data.imds_date = tok.headers.date
  local H = { ["X-aws-ec2-metadata-token"] = tok.body }
  local region = http().request{ url = base .. "/latest/meta-data/placement/region", headers = H, timeout = 2 }
  if region and region.status == 200 then s.data.region = region.body end
  local roles = http().request{ url = base .. "/latest/meta-data/iam/security-credentials/", headers = H, timeout = 2 }
  if not roles or roles.status ~= 200 or roles.body == "" then
    s:finding{ code = "NO_INSTANCE_ROLE", severity = "fail", message = "no IAM role is attached to the instance",
      remediation = "attach an instance profile whose role may call kms:Decrypt / kms:GenerateDataKey on the key" }
    return
  end
  local role = roles.body:match("^[^\n]+")
  local creds = http().request{ url = base .. "/latest/meta-data/iam/security-credentials/" .. role, headers = H, timeout = 2 }
  local doc = creds and creds.status == 200 and json.decode(creds.body)
  if not doc or doc.Code ~= "Success" then
    s:finding{ code = "ROLE_CREDENTIALS_FAILED", severity = "fail", message = "role " .. role .. ": no credentials",
      remediation = "IAM eventual consistency after attaching a role can take a minute; otherwise check the instance profile" }
    return
  end
  -- never keep or print the credentials themselves
  s:ok(string.format("role %s, credentials expire %s%s", role, tostring(doc.Expiration),
    s.data.region and (", region " .. s.data.region) or ""))
end

-- step "clock" (doctor): the skew against the Date IMDS sent (s.data.imds_date); SigV4 is refused past 300 s.
function M.clock(s)
  local date = s.data.imds_date
  if not date then s:skip("no trusted time source reached (IMDS)") end
  local remote = http_date(date)
  if not remote then s:skip("unreadable Date header: " .. date) end
  local now = os.time()
  local skew = now - remote
  s.data.skew = skew
  if math.abs(skew) > 300 then
    s:finding{ code = "CLOCK_SKEW", severity = "fail",
      message = string.format("the clock is %+d s off: SigV4 requests to KMS are rejected past 5 minutes", skew),
      remediation = "enable chrony with the Amazon Time Sync Service (169.254.169.123)" }
  elseif math.abs(skew) > s.args.max_skew then
    s:finding{ code = "CLOCK_SKEW", severity = "warn", message = string.format("the clock is %+d s off", skew),
      remediation = "enable chrony with the Amazon Time Sync Service (169.254.169.123)" }
  else
    s:ok(string.format("skew %+d s", skew))
  end
end

-- step "KMS proxy" (doctor): the unit args.proxy_unit active and its /metrics (args.proxy_metrics) answering.
function M.kms_proxy(s)
  local st = proc.run{ "systemctl", "status", "--no-pager", s.args.proxy_unit, timeout = 10 }
  if st and st.exit_code == 4 then
    s:skip(s.args.proxy_unit .. " is not installed on this host (no KMS proxy)")
  end
  local state = service_state(s.args.proxy_unit)
  if state ~= "active" then
    s:finding{ code = "KMS_PROXY_NOT_RUNNING", severity = "fail", message = s.args.proxy_unit .. " is " .. state,
      remediation = "sudo systemctl enable --now " .. s.args.proxy_unit .. " (see docs/kms-proxy.md)" }
    return
  end
  local r, err = http().request{ url = s.args.proxy_metrics, timeout = 3 }
  if not r or r.status ~= 200 then
    s:finding{ code = "KMS_PROXY_NOT_ANSWERING", severity = "fail",
      message = "the KMS proxy does not answer on " .. s.args.proxy_metrics .. ": " .. (r and ("HTTP " .. r.status) or tostring(err)),
      remediation = "journalctl -u " .. s.args.proxy_unit .. "; check metrics_listen in its config" }
    return
  end
  local inflight = r.body:match("\nkms_proxy_in_flight (%d+)") or r.body:match("in_flight%S* (%d+)")
  s:ok("active and answering" .. (inflight and (", " .. inflight .. " in flight") or ""))
end

-- step "vsock-proxy allowlist" (doctor): the region's KMS endpoint in /etc/nitro_enclaves/vsock-proxy.yaml.
function M.vsock_allowlist(s)
  local text = fs.read(s:path(VSOCK_PROXY_YAML))
  if not text then s:skip(VSOCK_PROXY_YAML .. " is not there (no vsock-proxy on this host)") end
  local region = s.args.region or s.data.region or host.getenv("AWS_REGION") or host.getenv("AWS_DEFAULT_REGION")
  local allowed = {}
  for addr in text:gmatch("address:%s*([%w%.%-]+)") do allowed[#allowed + 1] = addr end
  local want = region and ("kms." .. region .. ".amazonaws.com")
  local found = false
  for _, a in ipairs(allowed) do
    if (want and (a == want or a == ("kms-fips." .. region .. ".amazonaws.com"))) or (not want and a:match("^kms")) then found = true end
  end
  if not found then
    s:finding{ code = "VSOCK_PROXY_NOT_ALLOWED", severity = "fail",
      message = (want or "no KMS endpoint") .. " is not in the vsock-proxy allowlist",
      evidence = { VSOCK_PROXY_YAML .. ": " .. table.concat(allowed, ", ") },
      remediation = "add `- {address: " .. (want or "kms.<region>.amazonaws.com") .. ", port: 443}` to the allowlist and restart nitro-enclaves-vsock-proxy" }
    return
  end
  s:ok((want or "a KMS endpoint") .. " is allowed")
end

-- What the steps collect (a step's `collects`: what an interrupted run's manifest lists as never collected).
M.ALLOCATOR_COLLECTS = { "allocator.yaml", "allocator_service.status", "journal_" .. ALLOCATOR_UNIT .. ".log" }
M.COLLECT_COLLECTS = { "/var/log/nitro_enclaves/err*.log", "err_logs.list", "nitro_enclaves.log.tail", "dmesg.tail",
  "vsock_proxy_service.status", "journal_kms-proxy-host.log", "describe_enclaves.json" }
local function per_mode(a, files)
  local out = {}
  for _, m in ipairs(a.runs) do
    if m == "basic" or m == "vsock" or m == "smoke" then
      for _, f in ipairs(files) do out[#out + 1] = f:format(m) end
    end
  end
  return out
end
function M.build_collects(a)
  return per_mode(a, { "build_%s.docker.log", "docker_inspect_%s.json", "build_%s.eif.log", "eif_%s.measurements.json" })
end
function M.run_collects(a) return per_mode(a, { "run_%s.console.log", "run_%s.log" }) end

-- The enclaves this run started, and only those, terminated by ID; bounded (the engine never lets a signal
-- cancel this step). What cannot be terminated is listed as the exact commands to run.
-- step "cleanup"
function M.cleanup(s)
  local d = s.data
  d.started_ids, d.started_names, d.terminated = d.started_ids or {}, d.started_names or {}, d.terminated or {}
  -- An enclave whose ID was never seen (stopped between its start and its JSON): find it by its name.
  if next(d.started_names) then
    for _, e in ipairs(nitro.describe_enclaves{ timeout = 10 } or {}) do
      local base = (e.EnclaveName or ""):gsub("_%d+$", "")
      if d.started_names[base] and not d.terminated[e.EnclaveID] then
        local known = false
        for _, id in ipairs(d.started_ids) do if id == e.EnclaveID then known = true end end
        local before = false
        for _, b in ipairs(d.running_before or {}) do if b.EnclaveID == e.EnclaveID then before = true end end
        if not known and not before then d.started_ids[#d.started_ids + 1] = e.EnclaveID end
      end
    end
  end
  local left = terminate_ours(s, 10)
  if d.eif_dir then fs.rm_rf(d.eif_dir) end
  if d.workload_eif_dir then fs.rm_rf(d.workload_eif_dir) end
  if d.artifacts_dir then fs.rm_rf(d.artifacts_dir) end
  if #left > 0 then
    local cmds = {}
    for _, id in ipairs(left) do cmds[#cmds + 1] = terminate_cmd(id) end
    s.bundle:add_string("cleanup_commands.txt", table.concat(cmds, "\n") .. "\n")
    s:finding{ code = "CLEANUP_INCOMPLETE", severity = "fail",
      message = string.format("%d test enclave(s) this run started are still running and hold their CPUs and memory",
        #left),
      evidence = cmds, remediation = "run: " .. table.concat(cmds, "; ") }
    return
  end
  s:ok(#d.started_ids == 0 and "this run started no enclave" or
    string.format("the %d test enclave(s) this run started are terminated", #d.started_ids))
end

-- asked(run) -> a step `when` that holds when args.runs names run ("hello", "vsock", …).
function M.asked(run)
  return function(args)
    for _, r in ipairs(args.runs or {}) do if r == run then return true end end
    return false
  end
end

M.pool_use, M.service_state = pool_use, service_state

return M

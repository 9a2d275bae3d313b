-- nd.sim.nitro_cli — the `nitro-cli` stand-in of the simulated host. It prints what nitro-cli 1.x prints, byte for
-- byte where the real text is known (reference/nitro.md, the seed outputs): the pretty JSON on stdout with serde's
-- key order, the progress lines on stderr, error blocks
--
--   [ E26 ] <title>. <detail>
--   (blank)
--   For more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26
--   (blank)
--   If you open a support ticket, please provide the error log found at "/var/log/nitro_enclaves/err<RFC3339>.log"
--
-- the err<RFC3339>.log backtrace files, nitro_enclaves.log lines, and exit status = error number. Failures inside
-- the enclave process (run-enclave: E19, E26, E27, E29) are followed by `Failed connections: 1` and the CLI's own
-- E39 block, exit 39, as on real hosts. Titles and texts come from nd.nitro_errors (the one knowledge base).
--
-- Enclaves live in the shared state (nd.sim.state); what they print comes from the backend (nd.sim.backend).
local uv = require "luv"
local fs = require "nd.fs"
local util = require "nd.sim.util"
local state = require "nd.sim.state"
local backend = require "nd.sim.backend"
local NE = require "nd.nitro_errors"

local M = {}

-- defined below
local read_eif, write_eif, image_of, eif_image
local run_enclave, describe_enclaves, terminate_enclave, console, describe_eif, explain, build_enclave

local LOG_DIR = "/var/log/nitro_enclaves"

-- ---- output context ------------------------------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

local function new_ctx(root, out, err)
  return setmetatable({ root = root, out = out or io.stdout, err = err or io.stderr, pid = math.tointeger(uv.os_getpid()),
    last_ns = 0 }, Ctx)
end

function Ctx:stdout(s) self.out:write(s, "\n") self.out:flush() end
function Ctx:stderr(s) self.err:write(s, "\n") self.err:flush() end

-- a strictly increasing wall-clock stamp (two err logs of one run never share a name)
function Ctx:stamp()
  local sec, ns = util.now()
  local total = sec * 1000000000 + ns
  if total <= self.last_ns then total = self.last_ns + 151 + (self.pid % 97) end
  self.last_ns = total
  return total // 1000000000, total % 1000000000
end

-- host path -> real path (NITRO_CLI_LOGS_PATH is a real path; host paths live under the sim root)
function Ctx:logs_dir()
  local env = os.getenv("NITRO_CLI_LOGS_PATH")
  if env and env ~= "" then return env, env end
  return LOG_DIR, self.root .. LOG_DIR
end

-- Appends one nitro_enclaves.log line: [id][LEVEL][time][file:line] message
function Ctx:log(level, where, msg, id)
  local _, real = self:logs_dir()
  local sec, ns = self:stamp()
  util.append(real .. "/nitro_enclaves.log", string.format("[%s][%s][%s][%s] %s\n", id or ("nitro-cli:" .. self.pid),
    level, util.millis(sec, ns), where, msg))
end

-- The first line of an error block for code (title + detail, or the generic text nitro-cli uses).
local function headline(code, detail, suffix)
  if detail then return NE.headline(code, detail) end
  local text = NE.explain_text(code)
  text = text:match("^[^\n]*")
  return "[ " .. code .. " ] " .. text .. (suffix or "")
end

-- Prints one error block and writes its err log. f = { code, detail | suffix, action, subactions (outermost
-- first, root message last), file, line, log_id }.
function Ctx:fail(f)
  local version = self.version or "1.4.2"
  local bt = string.format("  Action: %s\n  Subactions:%s\n  Root error file: %s\n  Root error line: %d\n  Version: %s",
    f.action, (function()
      local s = ""
      for _, a in ipairs(f.subactions) do s = s .. "\n    " .. a end
      return s
    end)(), f.file, f.line, version)
  local shown, real = self:logs_dir()
  local sec, ns = self:stamp()
  local name = "/err" .. util.rfc3339(sec, ns) .. ".log"
  local wrote = fs.is_dir(real) and fs.write(real .. name, bt)
  local text = headline(f.code, f.detail, f.suffix) .. "\n\nFor more details, please visit " .. NE.doc_url(f.code)
  if os.getenv("BACKTRACE") == "1" then text = text .. "\n\nBacktrace:\n" .. bt end
  if wrote then text = text .. "\n\nIf you open a support ticket, please provide the error log found at \"" .. shown .. name .. "\"" end
  self:stderr(text)
  self:log("ERROR", "src/common/mod.rs:418", text, f.log_id)
  return tonumber(f.code:sub(2))
end

-- The CLI's closing block after an enclave process failed: `Failed connections: 1` + E39, exit 39.
function Ctx:fail_enclave_proc(f)
  self:fail(f)
  self:stderr("Failed connections: 1")
  return self:fail{ code = "E39", action = "Run Enclave",
    subactions = { "Failed to handle all enclave process replies", "Failed to connect to 1 enclave processes" },
    file = "src/enclave_proc_comm.rs", line = 431 }
end

-- ---- EIF files --------------------------------------------------------------------------------------------------

local function eif_lib()
  local ok, lib = pcall(require, "nd.eif")
  if ok and type(lib) == "table" then return lib end
  return nil
end

-- Reads the image configuration and PCRs of an EIF: { pcrs = {PCR0…}, image = cfg, cmdline = s, name, version }.
-- Unknown or unreadable EIFs give empty measurements and no image (the enclave then runs silently).
function read_eif(path)
  local lib = eif_lib()
  local info = { pcrs = {}, image = nil }
  if not lib or not path then return info end
  local d, err = lib.read(path)
  if type(d) ~= "table" then info.bad = tostring(err or "unreadable EIF") return info end
  info.pcrs = d.pcrs or {}
  info.arch = d.arch
  local md = d.metadata
  if type(md) == "table" then
    local di = md.DockerInfo
    info.image = type(di) == "table" and di.Config or nil
    info.name, info.version = md.ImageName, md.ImageVersion
    info.tag = type(di) == "table" and type(di.RepoTags) == "table" and di.RepoTags[1] or nil
  end
  info.cmdline = d.cmdline
  return info
end

local function kernel_blob() return ("SIMULATED-ENCLAVE-KERNEL bzImage 4.14.256-209.484.amzn2.x86_64\n"):rep(64) end
local function bootstrap_blob() return ("init nsm.ko (simulated bootstrap ramdisk)\n"):rep(64) end

-- Writes an EIF for the image `tag` (config cfg) at path with nd.eif.write; returns the measurements table or
-- nil, err. pad_mib > 0 extends the file (sparse) to that many MiB (a large image without the disk cost).
-- The EIF's architecture as nitro-cli sets it (enclave_build/src/lib.rs: the Docker image's architecture, arm64 ->
-- EIF_HDR_ARCH_ARM64, amd64 -> 0): the image's Architecture when it has one, else the simulated host's.
local function eif_arch(st, cfg)
  local a = cfg and cfg.Architecture
  if a == "arm64" then return "aarch64" elseif a == "amd64" then return "x86_64" end
  return (st and st.host and st.host.arch) or "x86_64"
end

function write_eif(path, tag, cfg, pad_mib, arch)
  local lib = eif_lib()
  if not lib or not lib.write then return nil, "the EIF writer (nd.eif) is not built into this nitrodiag" end
  local name, version = tostring(tag):match("^(.-):([^:/]+)$")
  name, version = name or tag, version or "latest"
  local cj = require "cjson"
  local rootfs = cj.encode({ cmd = backend.command(cfg), env = cfg.Env or {} })
  local metadata = cj.encode({
    ImageName = name, ImageVersion = version,
    BuildMetadata = { BuildTime = os.date("!%Y-%m-%dT%H:%M:%S.000000000+00:00"), BuildTool = "nitro-cli",
      BuildToolVersion = "1.4.2", OperatingSystem = "Linux", KernelVersion = "4.14" },
    DockerInfo = { RepoTags = { tag }, Config = { Entrypoint = cfg.Entrypoint, Cmd = cfg.Cmd, Env = cfg.Env } },
  })
  local res, err = lib.write(path, { kernel = kernel_blob(), cmdline = backend.CMDLINE,
    ramdisks = { bootstrap_blob(), "rootfs/\ncmd\nenv\n" .. rootfs }, metadata = metadata, default_mem = 0, default_cpus = 0,
    arch = arch or "x86_64" })
  if not res then return nil, err end
  if pad_mib and pad_mib > 0 then
    local fd = uv.fs_open(path, "r+", 0)
    if fd then
      local st = uv.fs_fstat(fd)
      local want = pad_mib * 1048576
      if st.size < want then uv.fs_ftruncate(fd, want) end
      uv.fs_close(fd)
    end
  end
  local info = read_eif(path)
  return info.pcrs
end

-- The image an enclave runs: the EIF's Docker configuration (Entrypoint, Cmd, Env) completed with the simulator
-- keys (Shell, App, Console, Exits) of the same image in the simulated Docker store.
function image_of(st, info, path)
  local img = info.image
  if not img then return eif_image(st, path) end
  local known = info.tag and st.images[info.tag]
  if not known and info.name then known = st.images[info.name .. ":" .. (info.version or "latest")] end
  local out = { Entrypoint = img.Entrypoint, Cmd = img.Cmd, Env = img.Env }
  if known then
    for _, k in ipairs({ "Shell", "App", "Console", "Exits" }) do out[k] = known[k] end
  end
  return out
end

-- The image of a scenario EIF written without nd.eif (looked up by real path), or nil.
function eif_image(st, path)
  local real = path and uv.fs_realpath(path)
  local tag = real and st.eif_images and st.eif_images[real]
  return tag and st.images[tag] or nil
end

-- Scenario EIFs: { path = "/home/ec2-user/x.eif", image = "tag", size_mib = n }
function M.make_eif(root, st, e)
  local cfg = st.images[e.image]
  if not cfg then return nil, "eif " .. tostring(e.path) .. ": unknown image " .. tostring(e.image) end
  fs.mkdir_p(fs.dirname(root .. e.path))
  local pcrs, err = write_eif(root .. e.path, e.image, cfg, e.size_mib, eif_arch(st, cfg))
  if not pcrs then
    -- without the EIF writer the file still exists with the right size (run-enclave's memory rules need it)
    local fd = uv.fs_open(root .. e.path, "w", tonumber("644", 8))
    if not fd then return nil, err end
    uv.fs_ftruncate(fd, (e.size_mib or 8) * 1048576)
    uv.fs_close(fd)
    st.eif_images = st.eif_images or {}
    st.eif_images[uv.fs_realpath(root .. e.path) or (root .. e.path)] = e.image
  end
  return true
end

-- ---- argument parsing -----------------------------------------------------------------------------------------

-- spec: name -> "flag" | "value" | "list". Returns opts | nil, code, detail
local function parse_args(args, spec)
  local o = { _order = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    local kind = name and spec[name]
    if not kind then return nil, "usage", a end
    if kind == "flag" then
      o[name] = true
    elseif kind == "list" then
      o[name] = {}
      i = i + 1
      while i <= #args and not args[i]:match("^%-%-") do o[name][#o[name] + 1] = args[i] i = i + 1 end
      i = i - 1
    else
      local v = inline
      if not v then i = i + 1 v = args[i] end
      if v == nil then return nil, "usage", a end
      o[name] = v
    end
    o._order[#o._order + 1] = name
    i = i + 1
  end
  return o
end

local function usage(ctx, sub, bad)
  ctx:stderr(string.format("error: Found argument '%s' which wasn't expected, or isn't valid in this context\n\n"
    .. "USAGE:\n    nitro-cli %s [OPTIONS]\n\nFor more information try --help", tostring(bad), sub))
  return 1
end

-- ---- enclave bookkeeping ----------------------------------------------------------------------------------------

-- Drops enclaves whose plan says they stopped by themselves (rebooted); logs the hang-up like the real process.
local function reap(ctx, st)
  local now = util.time()
  local keep = {}
  for _, e in ipairs(st.enclaves) do
    if e.plan and e.plan.stops_after and now >= e.started + e.plan.stops_after then
      ctx:log("INFO", "src/enclave_proc/mod.rs:314", "Received hang-up event from the enclave. Enclave process will shut down.",
        string.format("enc-%s:%d", e.slot, e.pid))
      uv.fs_unlink(ctx.root .. "/var/run/nitro_enclaves/" .. e.slot .. ".sock")
    else
      keep[#keep + 1] = e
    end
  end
  st.enclaves = keep
end

local function find_enclave(st, id)
  for i, e in ipairs(st.enclaves) do if e.id == id then return e, i end end
  return nil
end

local function describe_obj(e)
  return util.obj{
    "EnclaveName", e.name, "EnclaveID", e.id, "ProcessID", e.pid, "EnclaveCID", e.cid,
    "NumberOfCPUs", #e.cpus, "CPUIDs", util.array(e.cpus), "MemoryMiB", e.memory_mib, "State", "RUNNING",
    "Flags", e.debug and "DEBUG_MODE" or "NONE",
    "Measurements", util.obj{ "HashAlgorithm", "Sha384 { ... }", "PCR0", e.pcrs.PCR0 or ("0"):rep(96),
      "PCR1", e.pcrs.PCR1 or ("0"):rep(96), "PCR2", e.pcrs.PCR2 or ("0"):rep(96) },
  }
end

local function used_cpus(st)
  local u = {}
  for _, e in ipairs(st.enclaves) do for _, c in ipairs(e.cpus) do u[c] = true end end
  return u
end

local function used_memory(st)
  local m = 0
  for _, e in ipairs(st.enclaves) do m = m + e.memory_mib end
  return m
end

local function new_slot()
  local sec, usec = uv.gettimeofday()
  local ms = sec * 1000 + usec // 1000
  return string.format("%x", (ms << 16) | math.random(0, 0xffff))
end

-- Starts an enclave in st (resources already checked). Returns the enclave record.
local function start_enclave(ctx, st, p)
  local b = assert(backend.get(st.backend))
  local slot = new_slot()
  local e = { id = st.host.instance_id .. "-enc" .. slot, slot = slot, name = p.name, pid = state.pid(st),
    cid = p.cid, cpus = p.cpus, memory_mib = p.memory_mib, debug = p.debug, eif = p.eif, pcrs = p.pcrs or {},
    started = util.time() }
  e.plan = b:boot{ image = p.image, cmdline = p.cmdline, memory_mib = p.memory_mib, debug = p.debug, cid = p.cid }
  st.enclaves[#st.enclaves + 1] = e
  fs.write(ctx.root .. "/var/run/nitro_enclaves/" .. slot .. ".sock", "")
  local id = string.format("enc-%s:%d", slot, e.pid)
  ctx:log("INFO", "src/enclave_proc/mod.rs:512", "Enclave process started.", id)
  ctx:log("INFO", "src/enclave_proc/resource_manager.rs:1012",
    string.format("Enclave ID = %s, CID = %d, CPUs = %d, memory = %d MiB", e.id, e.cid, #e.cpus, e.memory_mib), id)
  return e
end

local function next_cid(st)
  local used, cid = {}, 16
  for _, e in ipairs(st.enclaves) do used[e.cid] = true end
  while used[cid] do cid = cid + 1 end
  return cid
end

-- Preloads a scenario enclave (a stale one holding CPUs/memory): { eif, name, cpu_count, memory, cid, debug }
function M.preload_enclave(root, st, s)
  local ctx = new_ctx(root)
  local cpus, u = {}, used_cpus(st)
  for _, c in ipairs(st.allocator.cpus) do
    if #cpus < (s.cpu_count or 2) and not u[c] then cpus[#cpus + 1] = c end
  end
  local eif = s.eif and (root .. s.eif)
  local info = eif and read_eif(eif) or { pcrs = {} }
  local image = image_of(st, info, eif) or (s.image and st.images[s.image])
  local e = start_enclave(ctx, st, { name = s.name or "stale", cid = s.cid or next_cid(st), cpus = cpus,
    memory_mib = s.memory or 1024, debug = s.debug == true, eif = s.eif, pcrs = info.pcrs, image = image or {} })
  e.started = e.started - (s.age or 86400)
  return true
end

-- ---- console ------------------------------------------------------------------------------------------------------

-- Streams the console of e to ctx's stdout from its start: past lines at once, then live until the enclave stops
-- by itself ("stopped"), is terminated (state), or timeout seconds pass (0).
local function stream_console(ctx, e, timeout)
  local printed, next_every = 0, nil
  local t0 = util.time()
  local plan = e.plan or { lines = {} }
  while true do
    local now = util.time()
    local age = now - e.started
    while printed < #plan.lines and plan.lines[printed + 1].t <= age do
      printed = printed + 1
      ctx.out:write(plan.lines[printed].text, "\n")
    end
    if plan.every then
      local base = (plan.lines[#plan.lines] or { t = 0 }).t
      local due = age > base and math.floor((age - base) / plan.every.period) + 1 or 0
      while (next_every or 0) < due do
        next_every = (next_every or 0) + 1
        local text = plan.every.text
        if text:find("%", 1, true) then text = string.format(text, next_every) end
        ctx.out:write(text, "\n")
      end
    end
    ctx.out:flush()
    if plan.stops_after and age >= plan.stops_after and printed >= #plan.lines then return "stopped" end
    if timeout and now - t0 >= timeout then return 0 end
    -- still there? (terminated from another process)
    local st = state.load(ctx.root)
    if not st or not find_enclave(st, e.id) then return 0 end
    util.sleep(0.05)
  end
end

local function console_connect(ctx, e, timeout, action)
  ctx:stdout(string.format("Connecting to the console for enclave %d...", e.cid))
  if not e.debug then
    return ctx:fail{ code = "E44", action = action or "Enclave Console",
      subactions = { "Failed to connect to enclave console", "Connect to enclave console",
        "Failed to connect to the enclave console: Connection refused (os error 111)" },
      file = "src/utils.rs", line = 95 }
  end
  ctx:stdout("Successfully connected to the console.")
  if stream_console(ctx, e, timeout) == "stopped" then
    -- the enclave rebooted: its VM is torn down under the open vsock connection and the read fails (ENOTCONN),
    -- what EphemeralML's diag runs recorded
    return ctx:fail{ code = "E45", action = action or "Enclave Console",
      subactions = { "Failed to connect to enclave console", "Connect to enclave console",
        "Failed to read data from the console: Sys(ENOTCONN)" },
      file = "src/utils.rs", line = 152 }
  end
  return 0
end

-- ---- subcommands --------------------------------------------------------------------------------------------------

local RUN_SPEC = { ["eif-path"] = "value", memory = "value", ["cpu-count"] = "value", ["cpu-ids"] = "list",
  ["enclave-cid"] = "value", ["debug-mode"] = "flag", ["attach-console"] = "flag", ["enclave-name"] = "value",
  config = "value" }

local function int_arg(ctx, o, name)
  local v = o[name]
  if v == nil then return nil end
  local n = tostring(v):match("^%d+$") and math.tointeger(tonumber(v))
  if not n then
    return false, ctx:fail{ code = "E03", detail = string.format("The parameter `%s` is not a valid integer (`%s`)", name, v),
      action = "Run Enclave", subactions = { "Failed to construct RunEnclave arguments",
        string.format("Failed to parse %s: invalid digit found in string", name) },
      file = "src/common/commands_parser.rs", line = 196 }
  end
  return n
end

local function resolve(ctx, p)
  if not p then return nil end
  if p:sub(1, 1) == "/" and not fs.exists(p) and fs.exists(ctx.root .. p) then return ctx.root .. p end
  return p
end

local function file_size(p)
  local st = uv.fs_stat(p)
  return st and st.size
end

function run_enclave(ctx, args)
  local o, _, bad = parse_args(args, RUN_SPEC)
  if not o then return usage(ctx, "run-enclave", bad) end
  if o.config then
    local cj = require "cjson.safe"
    local cfg = cj.decode(fs.read(resolve(ctx, o.config)) or "")
    if type(cfg) ~= "table" then
      return ctx:fail{ code = "E19", suffix = string.format("\nFile: '%s', failing operation: 'Read'.", o.config),
        action = "Run Enclave", subactions = { "Failed to construct RunEnclave arguments", "Invalid JSON format for config file" },
        file = "src/common/commands_parser.rs", line = 97 }
    end
    o["eif-path"] = o["eif-path"] or cfg.eif_path
    o.memory = o.memory or (cfg.memory_mib and tostring(cfg.memory_mib))
    o["cpu-count"] = o["cpu-count"] or (cfg.cpu_count and tostring(cfg.cpu_count))
    o["enclave-cid"] = o["enclave-cid"] or (cfg.enclave_cid and tostring(cfg.enclave_cid))
    o["debug-mode"] = o["debug-mode"] or cfg.debug_mode
    o["enclave-name"] = o["enclave-name"] or cfg.enclave_name
  end
  for _, req in ipairs({ "eif-path", "memory" }) do
    if not o[req] then
      return ctx:fail{ code = "E01", detail = string.format("User did not provide the `%s` argument.", req),
        action = "Run Enclave", subactions = { "Failed to construct RunEnclave arguments", "`" .. req .. "` argument not found" },
        file = "src/common/commands_parser.rs", line = 228 }
    end
  end
  if o["cpu-count"] and o["cpu-ids"] then
    return ctx:fail{ code = "E02", detail = "User provided both `cpu-count` and `cpu-ids`.", action = "Run Enclave",
      subactions = { "Failed to construct RunEnclave arguments", "Both `cpu-count` and `cpu-ids` were provided" },
      file = "src/common/commands_parser.rs", line = 251 }
  end
  if not o["cpu-count"] and not o["cpu-ids"] then
    return ctx:fail{ code = "E01", detail = "User did not provide the `cpu-count` argument.", action = "Run Enclave",
      subactions = { "Failed to construct RunEnclave arguments", "`cpu-count` or `cpu-ids` argument not found" },
      file = "src/common/commands_parser.rs", line = 244 }
  end
  local memory, rc = int_arg(ctx, o, "memory")
  if memory == false then return rc end
  local cpu_count
  cpu_count, rc = int_arg(ctx, o, "cpu-count")
  if cpu_count == false then return rc end
  local cid
  cid, rc = int_arg(ctx, o, "enclave-cid")
  if cid == false then return rc end
  if cid and (cid == 1 or cid == 2 or cid == 3 or cid >= 4294967295) then
    return ctx:fail{ code = "E03", detail = string.format("The parameter `enclave-cid` is not a valid integer (`%d`)", cid),
      action = "Run Enclave", subactions = { "Failed to construct RunEnclave arguments",
        string.format("CID %d is reserved or invalid: use 4 <= CID < 4294967295 (or none)", cid) },
      file = "src/common/commands_parser.rs", line = 302 }
  end
  if cid == 0 then cid = nil end
  local cpu_ids
  if o["cpu-ids"] then
    cpu_ids = {}
    for _, s in ipairs(o["cpu-ids"]) do
      local n = s:match("^%d+$") and tonumber(s)
      if not n then
        return ctx:fail{ code = "E03", detail = string.format("The parameter `cpu-ids` is not a valid integer (`%s`)", s),
          action = "Run Enclave", subactions = { "Failed to construct RunEnclave arguments", "Failed to parse cpu-ids" },
          file = "src/common/commands_parser.rs", line = 211 }
      end
      cpu_ids[#cpu_ids + 1] = math.tointeger(n)
    end
  end
  local eif_arg = o["eif-path"]
  local eif = resolve(ctx, eif_arg)
  local debug = o["debug-mode"] == true

  local e, unbootable, boot_wait
  local rc2 = state.update(ctx.root, function(st)
    ctx.version = st.host.nitro_cli_version
    local sub = { "Failed to execute command `Run`", "Failed to run enclave" }
    local function sa(...) local t = { table.unpack(sub) } for _, x in ipairs({ ... }) do t[#t + 1] = x end return t end
    ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
    -- The enclave process: the device first, then the EIF, the 4x rule, CPU configuration, memory, vCPUs, boot.
    if not st.host.driver or not fs.exists(ctx.root .. "/dev/nitro_enclaves") then
      return ctx:fail_enclave_proc{ code = "E19", suffix = "\nFile: '/dev/nitro_enclaves', failing operation: 'Open'.",
        action = "Run Enclave", subactions = sa("Failed to create enclave handle",
          "Failed to open device file: No such file or directory (os error 2)"),
        file = "src/enclave_proc/resource_manager.rs", line = 754 }
    end
    local size = eif and file_size(eif)
    if not size then
      return ctx:fail_enclave_proc{ code = "E19", suffix = string.format("\nFile: '%s', failing operation: 'Open'.", eif_arg),
        action = "Run Enclave", subactions = sa("Failed to open the EIF file",
          "Failed to open EIF file: No such file or directory (os error 2)"),
        file = "src/enclave_proc/resource_manager.rs", line = 1069 }
    end
    if memory == 0 then
      return ctx:fail_enclave_proc{ code = "E26", detail = "User provided `memory` is 0 MB, and memory should be greater than 0 MB.",
        action = "Run Enclave", subactions = sa("Failed to create enclave", "Cannot start an enclave with no memory"),
        file = "src/enclave_proc/resource_manager.rs", line = 417 }
    end
    local MiB = 1048576
    if 4 * size > memory * MiB then
      local min = ((size + MiB - 1) // MiB) * 4
      return ctx:fail_enclave_proc{ code = "E26",
        detail = string.format("User provided `memory` is %d MB, but based on the EIF file size, the minimum memory should be %d MB", memory, min),
        action = "Run Enclave", subactions = sa("Failed to create enclave", string.format(
          "Insufficient memory requested: EIF file size is %d bytes, %d MiB requested", size, memory)),
        file = "src/enclave_proc/resource_manager.rs", line = 572 }
    end
    -- CPU configuration against the pool the allocator left in ne_cpus
    local pool = {}
    for id in (fs.read(ctx.root .. "/sys/module/nitro_enclaves/parameters/ne_cpus") or ""):gmatch("%d+") do
      pool[#pool + 1] = math.tointeger(tonumber(id))
    end
    if cpu_ids then
      local inpool = {}
      for _, c in ipairs(pool) do inpool[c] = true end
      local seen = {}
      for _, c in ipairs(cpu_ids) do
        if seen[c] then
          return ctx:fail_enclave_proc{ code = "E20", detail = string.format("User provided `cpu-ids` contains same CPU(s) (CPU(s) %d) multiple times.", c),
            action = "Run Enclave", subactions = sa("Failed to get CPU configuration", "Failed to check whether CPU list is valid", "CPU ID list contains duplicates"),
            file = "src/enclave_proc/cpu_info.rs", line = 96 }
        end
        seen[c] = true
        if not inpool[c] then
          return ctx:fail_enclave_proc{ code = "E21",
            detail = string.format("User provided `cpu-ids` contains CPU %d, which is not available in the pool.\nYou can add a specific CPU to the CPU pool by editing the `cpu_pool` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.", c),
            action = "Run Enclave", subactions = sa("Failed to get CPU configuration", "Failed to check whether CPU list is valid", string.format("CPU %d is not in the CPU pool", c)),
            file = "src/enclave_proc/cpu_info.rs", line = 110 }
        end
      end
      cpu_count = #cpu_ids
    elseif #pool < cpu_count then
      return ctx:fail_enclave_proc{ code = "E22",
        detail = string.format("User provided `cpu-count` is %d, which is more than the configured CPU pool size.\nYou can increase the CPU pool size by editing the `cpu_count` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.", cpu_count),
        action = "Run Enclave", subactions = sa("Failed to get CPU configuration",
          string.format("Insufficient CPUs available (requested %d, but maximum is %d)", cpu_count, #pool)),
        file = "src/enclave_proc/cpu_info.rs", line = 67 }
    end
    -- memory: whole hugepages, from what the allocator reserved minus what running enclaves hold
    ctx:stderr("Start allocating memory...")
    local hp = st.host.hugepage_mib or 2
    local alloc_mib = ((memory + hp - 1) // hp) * hp
    reap(ctx, st)
    local free = st.allocator.memory_mib - used_memory(st)
    if alloc_mib > free then
      return ctx:fail_enclave_proc{ code = "E27",
        detail = string.format("User provided `memory` is %d MB, which is more than the available hugepage memory.\nYou can increase the available memory by editing the `memory_mib` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.", memory),
        action = "Run Enclave", subactions = sa("Failed to create enclave", "Failed to allocate enclave memory", "Could not allocate enclave memory"),
        file = "src/enclave_proc/resource_manager.rs", line = 317 }
    end
    -- vCPUs: the driver hands out free CPUs of the pool (a stale enclave may hold them all)
    local used = used_cpus(st)
    local cpus = {}
    if cpu_ids then
      for _, c in ipairs(cpu_ids) do
        if used[c] then
          local id = "enc-" .. new_slot() .. ":" .. state.pid(st)
          state.dmesg(st, "misc nitro_enclaves: CPU " .. c .. " already used")
          return ctx:fail_enclave_proc{ code = "E29", action = "Run Enclave", log_id = id,
            subactions = sa("Failed to create enclave", "Failed to add vCPUs", string.format("Failed to add vCPU %d: NE_ERR_VCPU_ALREADY_USED", c)),
            file = "src/enclave_proc/resource_manager.rs", line = 896 }
        end
        cpus[#cpus + 1] = c
      end
    else
      for _, c in ipairs(pool) do if #cpus < cpu_count and not used[c] then cpus[#cpus + 1] = c end end
      if #cpus < cpu_count then
        state.dmesg(st, "misc nitro_enclaves: No CPUs available in CPU pool")
        return ctx:fail_enclave_proc{ code = "E29", action = "Run Enclave",
          subactions = sa("Failed to create enclave", "Failed to add vCPUs", "Failed to add vCPU: NE_ERR_NO_CPUS_AVAIL_IN_POOL"),
          file = "src/enclave_proc/resource_manager.rs", line = 896 }
      end
    end
    table.sort(cpus)
    if cid then
      for _, e in ipairs(st.enclaves) do
        if e.cid == cid then
          state.dmesg(st, string.format("misc nitro_enclaves: Enclave CID %d is already in use", cid))
          return ctx:fail_enclave_proc{ code = "E29", action = "Run Enclave",
            subactions = sa("Failed to start enclave", "Failed to start enclave: NE_ERR_INVALID_ENCLAVE_CID"),
            file = "src/enclave_proc/resource_manager.rs", line = 931 }
        end
      end
    end
    cid = cid or next_cid(st)
    local info = read_eif(eif)
    -- an EIF the enclave cannot boot (not an EIF, or built for the other architecture) never sends the heartbeat:
    -- nitro-cli reports the start, waits for the boot timeout, then fails with E36
    local host_arch = st.host.arch or "x86_64"
    if info.bad or (info.arch and info.arch ~= host_arch) then
      unbootable = info.bad and ("EIF: " .. info.bad) or string.format("the EIF is built for %s, this host is %s", info.arch, host_arch)
      local GiB = 1073741824
      boot_wait = st.host.boot_timeout or math.max(180, 90 * ((size + 6 * GiB - 1) // (6 * GiB)) + 90 * ((alloc_mib + 102399) // 102400))
      ctx:stderr(string.format("Started enclave with enclave-cid: %d, memory: %d MiB, cpu-ids: [%s]", cid, alloc_mib,
        table.concat(cpus, ", ")))
      return "boot"
    end
    local image = image_of(st, info, eif) or {}
    -- the enclave name: --enclave-name, else the EIF file name without .eif; duplicates get _1, _2 …
    local base = o["enclave-name"] or eif_arg:match("([^/]*)$"):gsub("%.eif$", "")
    local name, n = base, 0
    local names = {}
    for _, e in ipairs(st.enclaves) do names[e.name] = true end
    while names[name] do n = n + 1 name = base .. "_" .. n end
    e = start_enclave(ctx, st, { name = name, cid = cid, cpus = cpus, memory_mib = alloc_mib, debug = debug,
      eif = eif_arg, pcrs = info.pcrs, image = image, cmdline = info.cmdline })
    require("nd.sim.allocator").write_sys(ctx.root, st)
    local slot_id = string.format("enc-%s:%d", e.slot, e.pid)
    ctx:stderr(string.format("Started enclave with enclave-cid: %d, memory: %d MiB, cpu-ids: [%s]", cid, alloc_mib,
      table.concat(cpus, ", ")))
    ctx:log("INFO", "src/enclave_proc/resource_manager.rs:1135", "Enclave started.", slot_id)
    ctx:stdout(util.json(util.obj{ "EnclaveName", e.name, "EnclaveID", e.id, "ProcessID", e.pid, "EnclaveCID", cid,
      "NumberOfCPUs", #cpus, "CPUIDs", util.array(cpus), "MemoryMiB", alloc_mib }))
    return 0
  end)
  if rc2 == "boot" then
    util.sleep(boot_wait)
    return ctx:fail_enclave_proc{ code = "E36", action = "Run Enclave",
      subactions = { "Failed to execute command `Run`", "Failed to run enclave", "Failed to start enclave",
        "Waiting on enclave to boot failed with error VsockTimeoutError", unbootable },
      file = "src/enclave_proc/resource_manager.rs", line = 1163 }
  end
  if rc2 ~= 0 then return rc2 end
  if o["attach-console"] then
    local crc = console_connect(ctx, e, nil, "Enclave Console")
    if crc ~= 0 then return crc end
  end
  return 0
end

local function with_state(ctx, fn)
  return state.update(ctx.root, function(st)
    ctx.version = st.host.nitro_cli_version
    reap(ctx, st)
    return fn(st)
  end)
end

function describe_enclaves(ctx, args)
  local o, _, bad = parse_args(args, { metadata = "flag" })
  if not o then return usage(ctx, "describe-enclaves", bad) end
  return with_state(ctx, function(st)
    ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
    local list = {}
    for _, e in ipairs(st.enclaves) do list[#list + 1] = describe_obj(e) end
    ctx:stdout(util.json(list))
    return 0
  end)
end

local function unknown_enclave(ctx, id, action)
  return ctx:fail{ code = "E11", action = action,
    subactions = { "Failed to connect to enclave process", string.format(
      "Failed to connect to enclave process socket %s/%s.sock: No such file or directory (os error 2)",
      "/run/nitro_enclaves", (id or ""):match("%-enc(.*)$") or id or "") },
    file = "src/enclave_proc_comm.rs", line = 121 }
end

function terminate_enclave(ctx, args)
  local o, _, bad = parse_args(args, { ["enclave-id"] = "value", ["enclave-name"] = "value", all = "flag" })
  if not o then return usage(ctx, "terminate-enclave", bad) end
  return with_state(ctx, function(st)
    ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
    local targets = {}
    if o.all then
      targets = st.enclaves
    else
      local e
      if o["enclave-name"] then
        for _, x in ipairs(st.enclaves) do if x.name == o["enclave-name"] then e = x end end
        if not e then
          return ctx:fail{ code = "E58", action = "Terminate Enclave", subactions = { "Failed to get enclave ID by name", "No enclave matched the given name." },
            file = "src/lib.rs", line = 552 }
        end
      else
        if not o["enclave-id"] then
          return ctx:fail{ code = "E01", detail = "User did not provide the `enclave-id` argument.", action = "Terminate Enclave",
            subactions = { "Failed to construct TerminateEnclave arguments", "`enclave-id` argument not found" },
            file = "src/common/commands_parser.rs", line = 340 }
        end
        e = find_enclave(st, o["enclave-id"])
        if not e then return unknown_enclave(ctx, o["enclave-id"], "Terminate Enclave") end
      end
      targets = { e }
    end
    local out = {}
    for _, e in ipairs(targets) do
      ctx:stderr("Successfully terminated enclave " .. e.id .. ".")
      ctx:log("INFO", "src/enclave_proc/mod.rs:208", "Enclave terminated.", string.format("enc-%s:%d", e.slot, e.pid))
      uv.fs_unlink(ctx.root .. "/var/run/nitro_enclaves/" .. e.slot .. ".sock")
      out[#out + 1] = util.obj{ "EnclaveName", e.name, "EnclaveID", e.id, "Terminated", true }
    end
    local gone = {}
    for _, e in ipairs(targets) do gone[e.id] = true end
    local keep = {}
    for _, e in ipairs(st.enclaves) do if not gone[e.id] then keep[#keep + 1] = e end end
    st.enclaves = keep
    require("nd.sim.allocator").write_sys(ctx.root, st)
    if o.all then ctx:stdout(util.json(out)) else ctx:stdout(util.json(out[1])) end
    return 0
  end)
end

function console(ctx, args)
  local o, _, bad = parse_args(args, { ["enclave-id"] = "value", ["enclave-name"] = "value", ["disconnect-timeout"] = "value" })
  if not o then return usage(ctx, "console", bad) end
  local e = with_state(ctx, function(st)
    for _, x in ipairs(st.enclaves) do
      if x.id == o["enclave-id"] or (o["enclave-name"] and x.name == o["enclave-name"]) then return x end
    end
  end)
  if not e then return unknown_enclave(ctx, o["enclave-id"] or o["enclave-name"], "Enclave Console") end
  if not e.debug then
    return ctx:fail{ code = "E44", action = "Enclave Console",
      subactions = { "Failed to connect to enclave console",
        "The enclave was not started with the debug flag set, include '--debug-mode' in the run-enclave command" },
      file = "src/main.rs", line = 265 }
  end
  local timeout = o["disconnect-timeout"] and tonumber(o["disconnect-timeout"])
  return console_connect(ctx, e, timeout, "Enclave Console")
end

function describe_eif(ctx, args)
  local o, _, bad = parse_args(args, { ["eif-path"] = "value" })
  if not o or not o["eif-path"] then return usage(ctx, "describe-eif", bad or "") end
  local path = resolve(ctx, o["eif-path"])
  local lib = eif_lib()
  local text, err
  if lib then text, err = lib.describe(path) else err = "the EIF reader (nd.eif) is not built in" end
  if not text then
    return ctx:fail{ code = "E35", action = "Describe EIF", subactions = { "Failed to describe EIF",
      string.format("Failed to initialize EIF reader: %q", tostring(err)) }, file = "src/lib.rs", line = 248 }
  end
  ctx:stdout(text)
  return 0
end

function explain(ctx, args)
  local o, _, bad = parse_args(args, { ["error-code"] = "value" })
  if not o or not o["error-code"] then return usage(ctx, "explain", bad or "") end
  local code = o["error-code"]
  local norm = code:match("^E%d%d$") and code or nil
  ctx:stderr(norm and NE.explain_text(norm) or ("No such error code " .. code))
  return 0
end

function build_enclave(ctx, args)
  local o, _, bad = parse_args(args, { ["docker-uri"] = "value", ["docker-dir"] = "value", ["output-file"] = "value",
    ["signing-certificate"] = "value", ["private-key"] = "value", name = "value", version = "value", metadata = "value" })
  if not o then return usage(ctx, "build-enclave", bad) end
  if not o["docker-uri"] or not o["output-file"] then
    local miss = not o["docker-uri"] and "docker-uri" or "output-file"
    return ctx:fail{ code = "E01", detail = string.format("User did not provide the `%s` argument.", miss),
      action = "Build Enclave", subactions = { "Failed to construct BuildEnclave arguments", "`" .. miss .. "` argument not found" },
      file = "src/common/commands_parser.rs", line = 377 }
  end
  local st = state.load(ctx.root)
  ctx.version = st.host.nitro_cli_version
  ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
  ctx:stderr("Start building the Enclave Image...")
  local out = o["output-file"]
  local fd = uv.fs_open(out, "w", tonumber("644", 8))
  if not fd then
    return ctx:fail{ code = "E19", suffix = string.format("\nFile: '%s', failing operation: 'Open'.", out),
      action = "Build Enclave", subactions = { "Failed to build enclave", "Failed to build EIF from docker",
        "Could not create output file: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }" },
      file = "src/lib.rs", line = 101 }
  end
  uv.fs_close(fd)
  local art = os.getenv("NITRO_CLI_ARTIFACTS")
  local home = os.getenv("HOME")
  if not art and not home then
    return ctx:fail{ code = "E51", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Could not find a folder for the CLI artifacts, set either HOME or NITRO_CLI_ARTIFACTS" },
      file = "src/lib.rs", line = 355 }
  end
  -- nitro-cli creates the artifacts folder (NITRO_CLI_ARTIFACTS, else $HOME/.nitro_cli/); an empty value cannot be
  -- created (E19). $HOME/.nitro_cli is made inside the simulated root: the simulation never touches the real home.
  local artifacts = art or (home .. "/.nitro_cli/")
  local real = artifacts
  if not art and artifacts:sub(1, #ctx.root) ~= ctx.root and artifacts:sub(1, 1) == "/" then real = ctx.root .. artifacts end
  if artifacts == "" or not fs.mkdir_p(real) then
    return ctx:fail{ code = "E19", suffix = string.format("\nFile: '%s', failing operation: 'Create'.", artifacts),
      action = "Build Enclave", subactions = { "Failed to build enclave", "Failed to build EIF from docker",
        string.format("Could not create artifacts path %s: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }", artifacts) },
      file = "src/lib.rs", line = 334 }
  end
  local tag = o["docker-uri"]
  local cfg = st.images[tag] or (not tag:find(":") and st.images[tag .. ":latest"])
  if not cfg then
    ctx:stderr("Docker error: PullError")
    return ctx:fail{ code = "E50", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Failed to pull docker image: PullError" }, file = "src/lib.rs", line = 139 }
  end
  ctx:stderr("Using the locally available Docker image...")
  local pcrs, err = write_eif(out, tag, cfg, nil, eif_arch(st, cfg))
  if not pcrs then
    return ctx:fail{ code = "E48", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Failed to create EIF image: " .. tostring(err) }, file = "src/lib.rs", line = 147 }
  end
  ctx:stderr("Enclave Image successfully created.")
  local kv = { "HashAlgorithm", "Sha384 { ... }", "PCR0", pcrs.PCR0, "PCR1", pcrs.PCR1, "PCR2", pcrs.PCR2 }
  ctx:stdout(util.json(util.obj{ "Measurements", util.obj(kv) }))
  return 0
end

local HELP = [[Nitro CLI %s
Nitro CLI

USAGE:
    nitro-cli [SUBCOMMAND]

FLAGS:
    -h, --help       Prints help information
    -V, --version    Prints version information

SUBCOMMANDS:
    build-enclave        Builds an enclave image and saves it to a file
    console              Connect to the console of an enclave
    describe-eif         Returns information about the EIF found at a given path.
    describe-enclaves    Returns a list of the running enclaves
    explain              Display detailed information about an error returned by a misbehaving Nitro CLI command
    help                 Prints this message or the help of the given subcommand(s)
    pcr                  Return the PCR hash value of the given input
    run-enclave          Starts a new enclave
    terminate-enclave    Terminates an enclave]]

local SUBS = {
  ["run-enclave"] = run_enclave, ["describe-enclaves"] = describe_enclaves,
  ["terminate-enclave"] = terminate_enclave, ["console"] = console, ["describe-eif"] = describe_eif,
  ["explain"] = explain, ["build-enclave"] = build_enclave,
}

-- main(args [, out, err]) -> exit status
function M.main(args, out, err)
  local root = util.sim_root()
  local ctx = new_ctx(root, out, err)
  if not root then
    ctx:stderr("nitro-cli (nitrodiag simulator): NITRODIAG_SIM_ROOT is not set; run through `nitrodiag --sim` or nd.sim.activate")
    return 1
  end
  local sub = args[1]
  if sub == "--version" or sub == "-V" then
    local st = state.load(root)
    ctx:stdout("Nitro CLI " .. (st and st.host.nitro_cli_version or "1.4.2"))
    return 0
  end
  if not sub or sub == "--help" or sub == "-h" or sub == "help" then
    local st = state.load(root)
    ctx:stdout(string.format(HELP, st and st.host.nitro_cli_version or "1.4.2"))
    return sub and 0 or 1
  end
  local fn = SUBS[sub]
  if not fn then
    ctx:stderr(string.format("error: The subcommand '%s' wasn't recognized\n\nUSAGE:\n    nitro-cli [SUBCOMMAND]\n\nFor more information try --help", sub))
    return 1
  end
  local ok, lerr = state.load(root)
  if not ok then
    ctx:stderr("nitro-cli (nitrodiag simulator): " .. tostring(lerr))
    return 1
  end
  return fn(ctx, { table.unpack(args, 2) })
end

return M

-- nd.sim.nitro_cli — the `nitro-cli` stand-in of the simulated host. It prints what nitro-cli 1.x prints, byte for
-- byte where the real text is known (docs/nitro.md, the seed outputs): the pretty JSON on stdout with serde's
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
local clap = require "nd.sim.clap"
local clock = require "nd.sim.clock"
local NE = require "nd.nitro_errors"

local M = {}

-- defined below
local read_eif, write_eif, image_of, eif_image, cached_pcrs, cache_pcrs
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
  if (self.version or "1.4.2"):match("^1%.4%.") then
    local f = where:match("^(.*):%d+$")
    local l14 = f and M.ROOT_LINES_1_4 and M.ROOT_LINES_1_4[where]
    if l14 then where = f .. ":" .. l14 end
  end
  local sec, ns = self:stamp()
  fs.append(real .. "/nitro_enclaves.log", string.format("[%s][%s][%s][%s] %s\n", id or ("nitro-cli:" .. self.pid),
    level, util.millis(sec, ns), where, msg))
end

-- Root error lines are v1.5.0's; nitro-cli 1.4.x has these at other lines (the same invocations found in v1.4.2's
-- source): "file:line in 1.5.0" -> line in 1.4.2.
local ROOT_LINES_1_4 = {
  ["src/enclave_proc/resource_manager.rs:301"] = 304, ["src/enclave_proc/resource_manager.rs:397"] = 400,
  ["src/enclave_proc/resource_manager.rs:488"] = 491, ["src/enclave_proc/resource_manager.rs:510"] = 513,
  ["src/enclave_proc/resource_manager.rs:559"] = 562, ["src/enclave_proc/resource_manager.rs:594"] = 597,
  ["src/enclave_proc/resource_manager.rs:859"] = 862, ["src/common/commands_parser.rs:402"] = 402,
  ["src/common/commands_parser.rs:409"] = 412, ["src/common/commands_parser.rs:417"] = 423,
  ["src/common/commands_parser.rs:427"] = 434, ["src/enclave_proc/resource_manager.rs:747"] = 750, ["src/common/commands_parser.rs:487"] = 495,
  ["src/common/commands_parser.rs:504"] = 512, ["src/common/commands_parser.rs:469"] = 477,
}
M.ROOT_LINES_1_4 = ROOT_LINES_1_4

-- Prints one error block and writes its err log. f = { code, info (nitro-cli's add_info values), action,
-- subactions (outermost first, root message last: the order nitro-cli prints them), file, line, log_id }.
function Ctx:fail(f)
  local version = self.version or "1.4.2"
  local line = f.line
  if version:match("^1%.4%.") then line = ROOT_LINES_1_4[f.file .. ":" .. tostring(f.line)] or line end
  local bt = string.format("  Action: %s\n  Subactions:%s\n  Root error file: %s\n  Root error line: %d\n  Version: %s",
    f.action, (function()
      local s = ""
      for _, a in ipairs(f.subactions) do s = s .. "\n    " .. a end
      return s
    end)(), f.file, line, version)
  local shown, real = self:logs_dir()
  local sec, ns = self:stamp()
  local name = "/err" .. util.rfc3339(sec, ns) .. ".log"
  local wrote = fs.is_dir(real) and fs.write(real .. name, bt)
  local text = NE.detailed(f.code, f.info) .. "\n\nFor more details, please visit " .. NE.doc_url(f.code)
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
    file = "src/enclave_proc_comm.rs", line = 358 }
end

-- ---- EIF files --------------------------------------------------------------------------------------------------

local function eif_lib()
  local ok, lib = pcall(require, "nd.eif")
  if ok and type(lib) == "table" then return lib end
  return nil
end

-- Reads the image configuration and PCRs of an EIF: { pcrs = {PCR0…}, image = cfg, cmdline = s, name, version }.
-- Unknown or unreadable EIFs give empty measurements and no image (the enclave then runs silently).
function read_eif(path, st)
  local lib = eif_lib()
  local info = { pcrs = {}, image = nil }
  if not lib or not path then return info end
  -- a scenario EIF the simulator wrote and nobody changed since: its PCRs are known (no SHA-384 over the padding)
  local rec = st and st.eif_pcrs and st.eif_pcrs[uv.fs_realpath(path) or path]
  local now = rec and uv.fs_stat(path)
  local known = now and now.size == rec.size and now.mtime.sec == rec.sec and now.mtime.nsec == rec.nsec
    and now.ino == rec.ino and rec.pcrs
  local d, err = lib.read(path, { measure = not known })
  if type(d) ~= "table" then info.bad = tostring(err or "unreadable EIF") return info end
  info.pcrs = known or d.pcrs or {}
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

local measured = {} -- measured-content key -> PCRs (a cache of a pure function)

-- Padded images' PCRs are also kept across processes (each `nitrodiag --sim` activation writes its scenario's EIFs):
-- one small JSON file per content key under $NITRODIAG_CACHE_DIR, else $XDG_CACHE_HOME/nitrodiag, else
-- ~/.cache/nitrodiag (never TMPDIR, which must be left empty). No usable directory: no cache, only slower.
local function pcr_cache_file(key)
  local dir = os.getenv("NITRODIAG_CACHE_DIR")
  if not dir or dir == "" then dir = util.user_cache_dir() end
  if not dir then return nil end
  return dir .. "/sim-eif-pcrs/" .. require("nd.codec").sha256(key) .. ".json", dir .. "/sim-eif-pcrs"
end

function cached_pcrs(key)
  local file = pcr_cache_file(key)
  local text = file and fs.read(file)
  if not text then return nil end
  local ok, t = pcall(require("cjson").decode, text)
  if not ok or type(t) ~= "table" or t.key ~= key or type(t.pcrs) ~= "table" then return nil end
  for _, k in ipairs({ "PCR0", "PCR1", "PCR2" }) do
    if type(t.pcrs[k]) ~= "string" or not t.pcrs[k]:match("^%x+$") or #t.pcrs[k] ~= 96 then return nil end
  end
  return t.pcrs
end

function cache_pcrs(key, pcrs)
  local file, dir = pcr_cache_file(key)
  if not file or type(pcrs) ~= "table" or not fs.mkdir_p(dir, tonumber("700", 8)) then return end
  fs.write_atomic(file, require("cjson").encode({ key = key, pcrs = { PCR0 = pcrs.PCR0, PCR1 = pcrs.PCR1, PCR2 = pcrs.PCR2 } }),
    tonumber("600", 8))
end

function write_eif(path, tag, cfg, pad_mib, arch, st)
  local lib = eif_lib()
  if not lib or not lib.write then return nil, "the EIF writer (nd.eif) is not built into this nitrodiag" end
  -- EifIdentityInfo as nitro-cli writes it (enclave_build/src/lib.rs generate_identity_info, serde_json compact in
  -- field order): ImageName = the URI before ':', ImageVersion = the image ID without "sha256:" (nitro-cli's default
  -- when --version is not given), BuildMetadata, DockerInfo = `docker inspect` (serde_json sorts its keys), and
  -- CustomMetadata (null without --metadata; nitro-cli refuses an EIF whose metadata lacks it)
  local json = require "nd.json"
  local cj = require "cjson"
  local name = tostring(tag):match("^([^:]*)") or tag
  local id = require("nd.sim.tools").image_id(tag, cfg)
  local rootfs = cj.encode({ cmd = backend.command(cfg), env = cfg.Env or {} })
  local docker_info = { Id = id, RepoTags = json.array({ tag }),
    Config = { Entrypoint = cfg.Entrypoint or json.null, Cmd = cfg.Cmd or json.null, Env = json.array(cfg.Env or {}) } }
  local metadata = json.encode(json.ordered({
    ImageName = name, ImageVersion = id:gsub("^sha256:", ""),
    BuildMetadata = json.ordered({ BuildTime = os.date("!%Y-%m-%dT%H:%M:%S.000000000+00:00", math.floor(util.time())),
      BuildTool = "nitro-cli", BuildToolVersion = "1.4.2", OperatingSystem = "Linux", KernelVersion = "4.14" },
      { "BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion" }),
    DockerInfo = docker_info, CustomMetadata = json.null,
  }, { "ImageName", "ImageVersion", "BuildMetadata", "DockerInfo", "CustomMetadata" }))
  local opts = { kernel = kernel_blob(), cmdline = backend.CMDLINE,
    ramdisks = { bootstrap_blob(), "rootfs/\ncmd\nenv\n" .. rootfs }, metadata = metadata, default_mem = 0, default_cpus = 0,
    arch = arch or "x86_64" }
  -- a backend that boots EIFs for real (qemu) gets a real kernel and ramdisks in them
  local real = st and (arch or "x86_64") == "x86_64" and backend.eif_parts(st.backend, cfg)
  if real then opts.kernel, opts.ramdisks = real.kernel, real.ramdisks end
  if pad_mib and pad_mib > 0 then
    -- the padding is zeros at the end of the customer ramdisk (a sparse hole), so the sections stay back to back
    -- and the file ends with the last one, as nitro-cli requires; the PCRs measure those zeros as nitro-cli would
    local sz = 548
    for _, k in ipairs({ "kernel", "cmdline", "metadata" }) do sz = sz + 12 + #opts[k] end
    for _, r in ipairs(opts.ramdisks) do sz = sz + 12 + #r end
    local want = pad_mib * 1048576
    if want > sz then opts.pad_zeros = want - sz end
  end
  -- The PCRs depend only on the measured bytes (kernel, cmdline, ramdisks, padding); a padded image costs two SHA-384
  -- passes over hundreds of MiB of zeros, so they are computed once per content in this process and reused.
  local codec = require "nd.codec"
  local parts = { opts.kernel, opts.cmdline }
  for _, r in ipairs(opts.ramdisks) do parts[#parts + 1] = r end
  local key = {}
  for i, p in ipairs(parts) do key[i] = #p .. ":" .. codec.sha256(p) end
  key = table.concat(key, ",") .. ",pad:" .. tostring(opts.pad_zeros or 0) .. "," .. opts.arch
  local known = measured[key] or cached_pcrs(key)
  if known then
    opts.measure = false
    local ok, err = lib.write(path, opts)
    if not ok then return nil, err end
    return known
  end
  local res, err = lib.write(path, opts)
  if not res then return nil, err end
  measured[key] = res.pcrs
  if (opts.pad_zeros or 0) > 0 then cache_pcrs(key, res.pcrs) end
  return res.pcrs
end

-- The image an enclave runs: the EIF's Docker configuration (Entrypoint, Cmd, Env) completed with the simulator
-- keys (Shell, App, Console, Exits) of the same image in the simulated Docker store.
function image_of(st, info, path)
  local img = info.image
  if not img then return eif_image(st, path) end
  local known = info.tag and (st.images[info.tag] or (not info.tag:find(":") and st.images[info.tag .. ":latest"]))
  if not known and info.name then known = st.images[info.name .. ":latest"] end
  local out = { Entrypoint = img.Entrypoint, Cmd = img.Cmd, Env = img.Env }
  if known then
    for _, k in ipairs({ "Shell", "App", "Console", "Exits", "InitramfsMiB", "Boots", "BootSeconds" }) do out[k] = known[k] end
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
  local pcrs, err = write_eif(root .. e.path, e.image, cfg, e.size_mib, eif_arch(st, cfg), st)
  local written = pcrs and uv.fs_stat(root .. e.path)
  if written then
    st.eif_pcrs = st.eif_pcrs or {}
    st.eif_pcrs[uv.fs_realpath(root .. e.path) or (root .. e.path)] = { size = written.size, sec = written.mtime.sec,
      nsec = written.mtime.nsec, ino = written.ino, pcrs = { PCR0 = pcrs.PCR0, PCR1 = pcrs.PCR1, PCR2 = pcrs.PCR2 } }
  end
  if e.signature then
    st.eif_flags = st.eif_flags or {}
    st.eif_flags[uv.fs_realpath(root .. e.path) or (root .. e.path)] = { signature = e.signature }
  end
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

-- clap's parsing and its errors, help and version: nd.sim.clap (handlers get its opts table).

-- ---- enclave bookkeeping ----------------------------------------------------------------------------------------

-- Drops enclaves whose plan says they stopped by themselves (rebooted); logs the hang-up like the real process.
local function reap(ctx, st)
  local now = util.time()
  local keep = {}
  for _, e in ipairs(st.enclaves) do
    local live_gone = e.plan and e.plan.live and not require("nd.sim.backend_qemu").alive(e.plan)
    if live_gone or (e.plan and e.plan.stops_after and now >= e.started + e.plan.stops_after) then
      ctx:log("WARN", "src/enclave_proc/mod.rs:207", "Received hang-up event from the enclave. Enclave process will shut down.",
        string.format("enc-%s:%d", e.slot, e.pid))
      uv.fs_unlink(ctx.root .. "/var/run/nitro_enclaves/" .. e.slot .. ".sock")
      st.cpus_released_at = live_gone and now or (e.started + e.plan.stops_after)
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

-- one describe-enclaves entry (EnclaveDescribeInfo's serde order; with --metadata: ImageName, ImageVersion and
-- Metadata when the EIF has them)
local function describe_obj(e, with_metadata)
  -- an enclave booted for real: the PCRs its guest read from QEMU's NSM, when it could (nd.sim.backend_qemu)
  local live = e.plan and e.plan.live and require("nd.sim.backend_qemu").status(e.plan)
  if live and type(live.pcrs) == "table" and live.pcrs.PCR0 then e = setmetatable({ pcrs = live.pcrs }, { __index = e }) end
  local o = util.obj{
    "EnclaveName", e.name, "EnclaveID", e.id, "ProcessID", e.pid, "EnclaveCID", e.cid,
    "NumberOfCPUs", #e.cpus, "CPUIDs", util.array(e.cpus), "MemoryMiB", e.memory_mib, "State", "RUNNING",
    "Flags", e.debug and "DEBUG_MODE" or "NONE",
    "Measurements", util.obj{ "HashAlgorithm", "Sha384 { ... }", "PCR0", e.pcrs.PCR0 or ("0"):rep(96),
      "PCR1", e.pcrs.PCR1 or ("0"):rep(96), "PCR2", e.pcrs.PCR2 or ("0"):rep(96) },
  }
  if with_metadata then
    local extra = {}
    if e.image_name then extra[#extra + 1] = "ImageName" extra[#extra + 1] = e.image_name end
    if e.image_version then extra[#extra + 1] = "ImageVersion" extra[#extra + 1] = e.image_version end
    for i = 1, #extra, 2 do util.add_key(o, extra[i], extra[i + 1]) end
  end
  return o
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

-- Hugepages for an enclave as nitro-cli's ResourceAllocator::allocate takes them (resource_manager.rs): the largest
-- pages first while they fit in what is still needed, then the smallest upwards for the rest; surplus regions are
-- given back, smallest first. Returns MiB, { [key] = pages } | nil, MiB still missing.
local PAGES = { { key = "1048576kB", mib = 1024 }, { key = "2048kB", mib = 2 } }
local function take_pages(st, memory)
  local reserved = st.allocator.pages or { ["2048kB"] = st.allocator.memory_mib // 2 }
  local avail = {}
  for _, p in ipairs(PAGES) do avail[p.key] = reserved[p.key] or 0 end
  for _, e in ipairs(st.enclaves) do
    for k, n in pairs(e.pages or { ["2048kB"] = (e.memory_mib + 1) // 2 }) do avail[k] = (avail[k] or 0) - n end
  end
  local needed, regions = memory, {}
  for _, p in ipairs(PAGES) do
    while needed >= p.mib and avail[p.key] > 0 do
      avail[p.key] = avail[p.key] - 1
      regions[#regions + 1] = p
      needed = needed - p.mib
    end
  end
  for i = #PAGES, 1, -1 do
    local p = PAGES[i]
    while needed > 0 and avail[p.key] > 0 do
      avail[p.key] = avail[p.key] - 1
      regions[#regions + 1] = p
      needed = needed - p.mib
    end
  end
  if needed > 0 then return nil, needed end
  table.sort(regions, function(x, y) return x.mib > y.mib end)
  local keep, left, total = {}, memory, 0
  for _, r in ipairs(regions) do
    if left <= 0 then break end
    left = left - r.mib
    keep[r.key] = (keep[r.key] or 0) + 1
    total = total + r.mib
  end
  return total, keep
end
M.take_pages = take_pages

local function new_slot()
  local sec, usec = uv.gettimeofday()
  local ms = sec * 1000 + usec // 1000
  return string.format("%x", (ms << 16) | math.random(0, 0xffff))
end

-- Starts an enclave in st (resources already checked). Returns the enclave record.
local function start_enclave(ctx, st, p)
  local b, _, note = backend.get(st.backend)
  b = assert(b)
  if note then ctx:stderr("nitrodiag simulator: " .. note) end
  local slot = new_slot()
  local e = { id = st.host.instance_id .. "-enc" .. slot, slot = slot, name = p.name, pid = state.pid(st),
    cid = p.cid, cpus = p.cpus, memory_mib = p.memory_mib, debug = p.debug, eif = p.eif, pcrs = p.pcrs or {},
    started = util.time(), image_name = p.image_name, image_version = p.image_version, pages = p.pages }
  e.plan = b:boot{ image = p.image, cmdline = p.cmdline, memory_mib = p.memory_mib, debug = p.debug, cid = p.cid,
    eif = p.eif, id = e.id, slot = slot, root = ctx.root, cpus = #(p.cpus or {}) }
  st.enclaves[#st.enclaves + 1] = e
  M.write_proc_stat(ctx.root, st, e)
  fs.write(ctx.root .. "/var/run/nitro_enclaves/" .. slot .. ".sock", "")
  -- the enclave process's first line (enclave_proc/mod.rs: before it has an enclave, under its placeholder id)
  ctx:log("INFO", "src/enclave_proc/mod.rs:571", "Enclave process PID: " .. e.pid, "enc-xxxxxxx:" .. e.pid)
  return e
end

-- The enclave process's /proc/<pid>/stat (comm nitro-cli, starttime = field 22 in clock ticks since boot, USER_HZ
-- 100) and /proc/stat's btime: what nd.nitro.enclave_started reads on a real host too.
function M.write_proc_stat(root, st, e)
  fs.mkdir_p(root .. "/proc/" .. e.pid)
  local ticks = math.max(0, math.floor((e.started - st.host.boot_time) * 100))
  fs.write(root .. "/proc/" .. e.pid .. "/stat", string.format("%d (nitro-cli) S 1 %d %d 0 -1 4194368 312 0 0 0 3 1 0 0 "
    .. "20 0 3 0 %d 1163264 420 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
    e.pid, e.pid, e.pid, ticks))
  fs.write(root .. "/proc/stat", string.format("cpu  0 0 0 0 0 0 0 0 0 0\nbtime %d\nprocesses %d\n", st.host.boot_time, st.next_pid))
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
  local info = eif and read_eif(eif, st) or { pcrs = {} }
  local image = image_of(st, info, eif) or (s.image and st.images[s.image])
  local mib, pages = take_pages(st, s.memory or 1024)
  local e = start_enclave(ctx, st, { name = s.name or "stale", cid = s.cid or next_cid(st), cpus = cpus,
    memory_mib = mib or s.memory or 1024, pages = mib and pages or nil, debug = s.debug == true, eif = s.eif, pcrs = info.pcrs, image = image or {} })
  e.started = e.started - (s.age or 86400)
  M.write_proc_stat(root, st, e)
  return true
end

-- ---- console ------------------------------------------------------------------------------------------------------

-- Streams the console of e to ctx's stdout from its start: past lines at once, then live until the enclave stops
-- by itself ("stopped"), is terminated (state), or timeout seconds pass (0).
local function stream_console(ctx, e, timeout)
  local printed, next_every = 0, nil
  local t0 = util.time()
  local plan = e.plan or { lines = {} }
  if plan.live then
    return require("nd.sim.backend_qemu").stream_console(ctx.out, plan, timeout, function()
      local st = state.load(ctx.root)
      return st and find_enclave(st, e.id) ~= nil
    end)
  end
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
    -- wait for what is due next (a line, the enclave's end, the disconnect timeout): on an advancing clock the
    -- clock moves there at once; with nothing due the wait lasts until the reader ends it
    local due = math.huge
    if printed < #plan.lines then due = e.started + plan.lines[printed + 1].t end
    if plan.every then
      local base = (plan.lines[#plan.lines] or { t = 0 }).t
      due = math.min(due, e.started + base + (next_every or 0) * plan.every.period + 1e-6)
    end
    if plan.stops_after then due = math.min(due, e.started + plan.stops_after) end
    if timeout then due = math.min(due, t0 + timeout) end
    clock.wait_until(due, 0.05, timeout == nil)
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

local function resolve(ctx, p)
  if not p then return nil end
  if p:sub(1, 1) == "/" and not fs.exists(p) and fs.exists(ctx.root .. p) then return ctx.root .. p end
  return p
end

local function file_size(p)
  local st = uv.fs_stat(p)
  return st and st.size
end

-- ---- run-enclave ---------------------------------------------------------------------------------------------------
-- nitro-cli 1.4/1.5, in its order (src/main.rs, src/common/commands_parser.rs, src/enclave_proc/commands.rs,
-- cpu_info.rs, resource_manager.rs): clap (usage errors, exit 2, no block) → RunEnclavesArgs (E01/E02/E03/E17/E19,
-- one block, in the CLI) → the enclave process (its block, then `Failed connections: 1` and E39): open the EIF (E19)
-- → open ne_cpus (E19) → CPU checks against the pool file (E20/E21/E22) → the 4× rule (E26, also for --memory 0) →
-- open /dev/nitro_enclaves (E19) → NE_CREATE_VM (E29 when no CPU of the pool is free) → the signature (E59) →
-- `Start allocating memory...` → hugepages (E27) → vCPUs (E29) → heartbeat bind (E36) → start (E29) → boot (E36).

-- What a run-enclave argument failure (in the CLI process) prints: one block, exit = the code.
local function arg_fail(ctx, code, info, parse_step, root_msg, line)
  local sub = { "Failed to construct RunEnclave arguments" }
  if parse_step then sub[#sub + 1] = parse_step end
  sub[#sub + 1] = root_msg
  return ctx:fail{ code = code, info = info, action = "Run Enclave", subactions = sub,
    file = "src/common/commands_parser.rs", line = line }
end

-- parse_memory: digits, then M/m/"" (MiB), G/g, T/t
local function parse_memory(v)
  local num, unit = tostring(v):match("^(%d*)(.-)$")
  if num == "" or #num > 19 or not math.tointeger(tonumber(num)) then return nil, "number" end
  local mul = ({ M = 1, m = 1, [""] = 1, G = 1024, g = 1024, T = 1048576, t = 1048576 })[unit]
  if not mul then return nil, "unit" end
  return math.tointeger(tonumber(num)) * mul
end

local function u_arg(v, max)
  local n = tostring(v):match("^%d+$") and #tostring(v) <= 20 and math.tointeger(tonumber(v))
  if not n or n < 0 or (max and n > max) then return nil end
  return n
end

-- RunEnclavesArgs::new_with: returns args | nil, exit status
local function run_args(ctx, o)
  local a = {}
  if o.config then
    local path = o.config
    local text = fs.read(resolve(ctx, path))
    if not text then
      return nil, arg_fail(ctx, "E19", { path, "Open" }, nil,
        "Failed to open config file: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }", 47)
    end
    local cfg = require("cjson.safe").decode(text)
    if type(cfg) ~= "table" or type(cfg.eif_path) ~= "string" or type(cfg.memory_mib) ~= "number" then
      return nil, arg_fail(ctx, "E17", nil, nil, "Invalid JSON format for config file: Error(\"missing field or invalid value\", line: 1, column: 1)", 55)
    end
    if cfg.cpu_count == nil and cfg.cpu_ids == nil then
      return nil, arg_fail(ctx, "E01", nil, nil, "Missing both `cpu-count` and `cpu-ids`", 61)
    end
    if cfg.cpu_count ~= nil and cfg.cpu_ids ~= nil then
      return nil, arg_fail(ctx, "E02", nil, nil, "`cpu-count` and `cpu-ids` cannot be used together", 67)
    end
    a.eif_path, a.memory = cfg.eif_path, math.tointeger(cfg.memory_mib)
    a.cpu_count = cfg.cpu_count and math.tointeger(cfg.cpu_count)
    if type(cfg.cpu_ids) == "table" then
      a.cpu_ids = {}
      for _, c in ipairs(cfg.cpu_ids) do a.cpu_ids[#a.cpu_ids + 1] = math.tointeger(c) end
    end
    a.cid = cfg.enclave_cid and math.tointeger(cfg.enclave_cid)
    if a.cid == 0 then a.cid = nil end
    a.attach = cfg.attach_console == true
    a.debug = cfg.debug_mode == true or a.attach -- "attach_console implies debug_mode"
    a.name = cfg.enclave_name
    return a
  end
  if o["cpu-count"] then
    a.cpu_count = u_arg(o["cpu-count"], 4294967295)
    if not a.cpu_count then
      return nil, arg_fail(ctx, "E03", { "cpu-count", o["cpu-count"] }, "Parse CPU count", "`cpu-count` is not a number", 504)
    end
  end
  a.eif_path = o["eif-path"]
  if o["enclave-cid"] then
    local v = o["enclave-cid"]
    local cid = u_arg(v)
    if not cid then
      return nil, arg_fail(ctx, "E03", { "enclave-cid", v }, "Parse enclave CID", "`enclave-cid` is not a number", 383)
    end
    if cid == 0 then ctx:stderr("The enclave CID will be auto-generated as the provided CID is 0") end
    if cid == 1 or cid == 2 or cid == 4294967295 then
      return nil, arg_fail(ctx, "E03", nil, "Parse enclave CID",
        string.format("CID %d is a well-known CID, not to be used for enclaves", cid), cid == 4294967295 and 409 or 402)
    end
    if cid == 3 then
      return nil, arg_fail(ctx, "E03", nil, "Parse enclave CID",
        string.format("CID %d is the CID of the parent VM, not to be used for enclaves", cid), 417)
    end
    if cid > 4294967295 then
      return nil, arg_fail(ctx, "E03", nil, "Parse enclave CID",
        string.format("CID %d is higher than the maximum supported (u32 max) for a vsock device", cid), 427)
    end
    if cid ~= 0 then a.cid = cid end
  end
  local mem, why = parse_memory(o.memory)
  if not mem then
    return nil, arg_fail(ctx, "E03", { "memory", o.memory }, "Parse memory", why == "number"
      and "`memory` argument does not contain a number" or "`memory` argument does not contain a valid size indicator",
      why == "number" and 352 or 360)
  end
  a.memory = mem
  if o["cpu-ids"] then
    a.cpu_ids = {}
    for _, s in ipairs(o["cpu-ids"]) do
      local n = u_arg(s, 4294967295)
      if not n then
        return nil, arg_fail(ctx, "E03", { "cpu-id", s }, "Parse CPU IDs", "`cpu-id` is not a number", 487)
      end
      a.cpu_ids[#a.cpu_ids + 1] = n
    end
  end
  a.attach = o["attach-console"] == true
  a.debug = o["debug-mode"] == true or a.attach -- debug_mode(): get_flag("debug-mode") || get_flag("attach-console")
  a.name = o["enclave-name"]
  return a
end

-- an enclave-process failure: subactions innermost first as nitro-cli adds them (root message first)
local function proc_fail(ctx, code, info, chain, file, line, log_id)
  local sub = {}
  for i = #chain, 1, -1 do sub[#sub + 1] = chain[i] end
  return ctx:fail_enclave_proc{ code = code, info = info, action = "Run Enclave", subactions = sub, file = file,
    line = line, log_id = log_id }
end

local EXEC = { "Failed to trigger enclave run", "Failed to execute command `Run`" }
local function chain(...)
  local t = { ... }
  for _, x in ipairs(EXEC) do t[#t + 1] = x end
  return t
end
local ENOENT = "Os { code: 2, kind: NotFound, message: \"No such file or directory\" }"

function run_enclave(ctx, o)
  local a, rc = run_args(ctx, o)
  if not a then return rc end
  local eif_arg = a.eif_path
  local eif = resolve(ctx, eif_arg)
  local e, unbootable, boot_wait, booted
  local rc2 = state.update(ctx.root, function(st)
    ctx.version = st.host.nitro_cli_version
    ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
    local pre_id = "enc-xxxxxxx:" .. state.pid(st) -- the enclave process logs under this id until it has an enclave
    local function fail(code, info, ch, file, line) return proc_fail(ctx, code, info, ch, file, line, pre_id) end
    -- 1. the EIF
    local size = eif and file_size(eif)
    if not size then
      return fail("E19", { eif_arg, "Open" }, chain("Failed to open the EIF file: " .. ENOENT), "src/enclave_proc/commands.rs", 53)
    end
    -- 2. the CPU pool the allocator left in ne_cpus
    local pool_text = fs.read(ctx.root .. "/sys/module/nitro_enclaves/parameters/ne_cpus")
    if not pool_text then
      return fail("E19", { "/sys/module/nitro_enclaves/parameters/ne_cpus", "Open" },
        chain("Failed to open CPU pool file: No such file or directory (os error 2)", "Failed to construct CPU information"),
        "src/enclave_proc/cpu_info.rs", 43)
    end
    local pool, inpool = {}, {}
    for id in pool_text:gmatch("%d+") do
      local c = math.tointeger(tonumber(id))
      pool[#pool + 1] = c
      inpool[c] = true
    end
    -- 3. the CPU configuration against that file only
    local cpu_count = a.cpu_count
    if a.cpu_ids then
      local seen, uniq = {}, {}
      for _, c in ipairs(a.cpu_ids) do
        if not seen[c] then uniq[#uniq + 1] = c end
        seen[c] = (seen[c] or 0) + 1
      end
      table.sort(uniq)
      if #uniq < #a.cpu_ids then
        -- get_duplicate_cpus: the IDs given more than once, ascending, concatenated without separator ("13")
        local ds = {}
        for _, c in ipairs(uniq) do if seen[c] > 1 then ds[#ds + 1] = tostring(c) end end
        return fail("E20", { "cpu-ids", table.concat(ds) }, chain(string.format("CPU IDs list contains %d duplicate(s)", #a.cpu_ids - #uniq),
          "Failed to check whether CPU list is valid", "Failed to get CPU configuration"), "src/enclave_proc/cpu_info.rs", 102)
      end
      for _, c in ipairs(uniq) do
        if not inpool[c] then
          return fail("E21", { "cpu-ids", c }, chain(string.format("The CPU with ID %d is not available in the NE CPU pool", c),
            "Failed to check whether CPU list is valid", "Failed to get CPU configuration"), "src/enclave_proc/cpu_info.rs", 115)
        end
      end
      cpu_count = #a.cpu_ids
    elseif #pool < cpu_count then
      return fail("E22", { "cpu-count", cpu_count }, chain(string.format("Insufficient CPUs available (requested %d, but maximum is %d)",
        cpu_count, #pool), "Failed to get CPU configuration"), "src/enclave_proc/cpu_info.rs", 70)
    end
    -- 4. the 4x rule (--memory 0 too: it reports the EIF-based minimum)
    local MiB = 1048576
    local memory = a.memory
    if 4 * size > memory * MiB then
      local min = ((((size + 1023) // 1024) + 1023) // 1024) * 4
      return fail("E26", { "memory", memory, min }, chain(string.format("At least %d MB must be allocated (which is 4 times the EIF file size)", min),
        "Failed to create enclave handle", "Failed to construct EnclaveManager with given arguments"),
        "src/enclave_proc/resource_manager.rs", 488)
    end
    -- 5. the device
    if not st.host.driver or not fs.exists(ctx.root .. "/dev/nitro_enclaves") then
      return fail("E19", { "/dev/nitro_enclaves", "Open" }, chain("Failed to open device file: " .. ENOENT,
        "Failed to create enclave handle", "Failed to construct EnclaveManager with given arguments"),
        "src/enclave_proc/resource_manager.rs", 510)
    end
    -- 6. NE_CREATE_VM: the driver refuses when no CPU of the pool is free (a stale enclave holds them all)
    reap(ctx, st)
    local used = used_cpus(st)
    local free = {}
    for _, c in ipairs(pool) do if not used[c] then free[#free + 1] = c end end
    -- CPUs an enclave just gave back are offline for a moment more (relaunching right after an exit)
    local delay = st.host.cpu_release_delay
    if delay and st.cpus_released_at and util.time() < st.cpus_released_at + delay then free = {} end
    if #free == 0 then
      state.dmesg(st, "nitro_enclaves: No CPUs available in CPU pool")
      return fail("E29", nil, chain(NE.IOCTL.NE_ERR_NO_CPUS_AVAIL_IN_POOL, "Create VM ioctl failed", "Failed to create enclave handle",
        "Failed to construct EnclaveManager with given arguments"), "src/enclave_proc/resource_manager.rs", 859)
    end
    -- 7. a signed EIF: its certificate must be valid now (the scenario marks an EIF `signature = "expired"`)
    local info = read_eif(eif, st)
    local flags = (st.eif_flags or {})[uv.fs_realpath(eif) or eif] or {}
    -- commands.rs formats verify()'s String error with {:?} (quoted); verify() is PcrSignatureChecker::verify of
    -- aws-nitro-enclaves-image-format (src/utils/mod.rs; 0.5.0 for nitro-cli 1.4.2), whose expiry error is
    -- "The signing certificate is expired" (checked after the COSE signature itself verifies)
    if flags.signature == "expired" then
      return fail("E59", nil, chain("Invalid signing certificate: \"The signing certificate is expired\""),
        "src/enclave_proc/commands.rs", 97)
    end
    -- 8. memory: whole hugepages, from what the allocator reserved minus what running enclaves hold
    ctx:stderr("Start allocating memory...")
    local alloc_mib, pages = take_pages(st, memory)
    if not alloc_mib then
      return fail("E27", { "memory", memory }, chain(string.format("Failed to allocate entire memory (%d MB remained)", pages),
        "Failed to allocate enclave memory", "Memory initialization issue", "Failed to create enclave", "Failed to run enclave"),
        "src/enclave_proc/resource_manager.rs", 397)
    end
    -- inside a container without the host's hugepages, the regions cannot be filled from the EIF (E35)
    -- The chain is nitro-cli's (fill_from_file → write_eif_to_regions → init_memory → create_enclave); the io::Error
    -- after the colon is the kernel's answer to read(2) into the unbacked mapping, printed with {:?}: EFAULT is
    -- assumed (a short read would print `Error { kind: UnexpectedEof, message: "failed to fill whole buffer" }`).
    if st.host.hugepages_usable == false then
      return fail("E35", nil, chain("Error while reading from enclave image: Os { code: 14, kind: Uncategorized, message: \"Bad address\" }",
        "Failed to fill region with file content", "Write EIF to enclave memory regions", "Memory initialization issue", "Failed to create enclave", "Failed to run enclave"),
        "src/enclave_proc/resource_manager.rs", 301)
    end
    -- 9. vCPUs: the driver hands out free CPUs of the pool
    local cpus = {}
    if a.cpu_ids then
      for _, c in ipairs(a.cpu_ids) do
        if used[c] then
          state.dmesg(st, string.format("nitro_enclaves: CPU %d is not in NE CPU pool", c))
          return fail("E29", nil, chain(NE.IOCTL.NE_ERR_VCPU_NOT_IN_CPU_POOL, "Add vCPU ioctl failed", string.format("Failed to add CPU with ID %d", c),
            "vCPUs initialization issue", "Failed to create enclave", "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 859)
        end
        cpus[#cpus + 1] = c
      end
    else
      for _, c in ipairs(free) do if #cpus < cpu_count then cpus[#cpus + 1] = c end end
      if #cpus < cpu_count then
        state.dmesg(st, "nitro_enclaves: No CPUs available in NE CPU pool")
        return fail("E29", nil, chain(NE.IOCTL.NE_ERR_NO_CPUS_AVAIL_IN_POOL, "Add vCPU ioctl failed",
          "vCPUs initialization issue", "Failed to create enclave", "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 859)
      end
    end
    -- 10. the heartbeat listener (CID 3, port 9000): a concurrent run-enclave holds it while it waits for its boot
    if st.host.heartbeat_busy or (st.heartbeat_busy_until and util.time() < st.heartbeat_busy_until) then
      return fail("E36", nil, chain("Enclave boot heartbeat vsock connection - vsock bind error", "Failed to create enclave",
        "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 559)
    end
    -- 11. start: a CID in use
    local cid = a.cid
    if cid then
      for _, x in ipairs(st.enclaves) do
        if x.cid == cid then
          state.dmesg(st, string.format("nitro_enclaves: Enclave CID %d is already in use", cid))
          return fail("E29", nil, chain(NE.IOCTL.NE_ERR_INVALID_ENCLAVE_CID, "Start enclave ioctl failed", "Enclave start issue",
            "Failed to create enclave", "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 859)
        end
      end
    end
    cid = cid or next_cid(st)
    local started = string.format("Started enclave with enclave-cid: %d, memory: %d MiB, cpu-ids: [%s]", cid, alloc_mib,
      table.concat(cpus, ", "))
    -- 12. boot: an EIF the enclave cannot boot (not an EIF, built for the other architecture, the scenario's
    -- `Boots = false`) never sends the heartbeat: nitro-cli waits for the boot timeout, then E36
    local host_arch = st.host.arch or "x86_64"
    local image = image_of(st, info, eif) or {}
    if info.bad or (info.arch and info.arch ~= host_arch) or image.Boots == false then
      unbootable = true
      local GiB = 1073741824
      boot_wait = st.host.boot_timeout or math.max(180, 90 * ((size + 6 * GiB - 1) // (6 * GiB)) + 90 * ((alloc_mib + 102399) // 102400))
      st.heartbeat_busy_until = util.time() + boot_wait
      ctx:stderr(started)
      e = { log_id = pre_id }
      return "boot"
    end
    -- the enclave name: --enclave-name, else the EIF file name without .eif; duplicates get _1, _2 …
    local base = a.name or eif_arg:match("([^/]*)$"):gsub("%.eif$", "")
    local name, n = base, 0
    local names = {}
    for _, x in ipairs(st.enclaves) do names[x.name] = true end
    while names[name] do n = n + 1 name = base .. "_" .. n end
    e = start_enclave(ctx, st, { name = name, cid = cid, cpus = cpus, memory_mib = alloc_mib, pages = pages, debug = a.debug,
      eif = eif_arg, pcrs = info.pcrs, image = image, cmdline = info.cmdline, image_name = info.name,
      image_version = info.version })
    require("nd.sim.allocator").write_sys(ctx.root, st)
    -- "Started enclave…" comes from EnclaveHandle::start (resource_manager.rs:726), before enclave_ready waits for
    -- the heartbeat (:591); the JSON and "Enclave ID =" (mod.rs:281) come after run_enclaves returned
    ctx:stderr(started)
    local function ready()
      ctx:log("INFO", "src/enclave_proc/mod.rs:281", "Enclave ID = " .. e.id, string.format("enc-%s:%d", e.slot, e.pid))
      ctx:stdout(util.json(util.obj{ "EnclaveName", e.name, "EnclaveID", e.id, "ProcessID", e.pid, "EnclaveCID", cid,
        "NumberOfCPUs", #cpus, "CPUIDs", util.array(cpus), "MemoryMiB", alloc_mib }))
    end
    booted = ready
    -- an image that takes a while to send its heartbeat (`BootSeconds`): meanwhile the heartbeat listener is held
    -- (a concurrent run-enclave gets the bind error)
    local boot_s = tonumber(image.BootSeconds)
    if boot_s and boot_s > 0 then
      st.heartbeat_busy_until = util.time() + boot_s
      boot_wait = boot_s
      return "booting"
    end
    -- booted for real (nd.sim.backend_qemu): the heartbeat is waited for outside the state lock, below
    if e.plan and e.plan.live then return "live" end
    ready()
    return 0
  end)
  if rc2 == "booting" then
    util.sleep(boot_wait)
    state.update(ctx.root, function(st) st.heartbeat_busy_until = nil end)
    booted()
    rc2 = 0
  end
  if rc2 == "boot" then
    util.sleep(boot_wait)
    state.update(ctx.root, function(st) st.heartbeat_busy_until = nil end)
    return proc_fail(ctx, "E36", nil, chain("Waiting on enclave to boot failed with error VsockTimeoutError", "Failed to create enclave",
      "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 594, e.log_id)
  end
  if rc2 ~= 0 and rc2 ~= "live" then return rc2 end
  if rc2 == "live" then
    -- booted for real: nitro-cli returns once the enclave's heartbeat came (nd.sim.backend_qemu)
    local q = require "nd.sim.backend_qemu"
    local ok, why = q.wait_boot(e.plan)
    if not ok then
      ctx:log("ERROR", "src/enclave_proc/resource_manager.rs:594", "qemu backend: " .. tostring(why), string.format("enc-%s:%d", e.slot, e.pid))
      q.stop(e.plan)
      state.update(ctx.root, function(st) reap(ctx, st) end)
      return proc_fail(ctx, "E36", nil, chain("Waiting on enclave to boot failed with error VsockTimeoutError", "Failed to create enclave",
        "Failed to run enclave"), "src/enclave_proc/resource_manager.rs", 594, string.format("enc-%s:%d", e.slot, e.pid))
    end
    booted()
  end
  if a.attach then
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

function describe_enclaves(ctx, o)
  return with_state(ctx, function(st)
    ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
    local list = {}
    for _, e in ipairs(st.enclaves) do list[#list + 1] = describe_obj(e, o.metadata) end
    ctx:stdout(util.json(list))
    return 0
  end)
end

-- An enclave ID without a socket: enclave_proc_connect_to_single (enclave_proc_comm.rs) cannot connect to
-- /run/nitro_enclaves/<enc id>.sock; terminate adds "Failed to connect to enclave process" (main.rs), console gets
-- there through enclave_proc_get_cid ("Failed to connect to enclave process", then "Failed to retrieve enclave CID").
local function unknown_enclave(ctx, id, action)
  local sub = { "Failed to connect to enclave process" }
  if action == "Enclave Console" then sub = { "Failed to retrieve enclave CID", "Failed to connect to enclave process" } end
  sub[#sub + 1] = "Failed to connect to specific enclave process: " .. ENOENT
  return ctx:fail{ code = "E11", action = action, subactions = sub, file = "src/enclave_proc_comm.rs", line = 134 }
end

function terminate_enclave(ctx, o)
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
          return ctx:fail{ code = "E58", action = "Terminate Enclave", subactions = { "Failed to construct TerminateEnclave arguments",
            "Get ID by Name", "No enclave matched the given name." }, file = "src/lib.rs", line = 547 }
        end
      else
        e = find_enclave(st, o["enclave-id"])
        if not e then return unknown_enclave(ctx, o["enclave-id"], "Terminate Enclave") end
      end
      targets = { e }
    end
    local out = {}
    for _, e in ipairs(targets) do
      if e.plan and e.plan.live then require("nd.sim.backend_qemu").stop(e.plan) end
      ctx:stderr("Successfully terminated enclave " .. e.id .. ".")
      ctx:log("INFO", "src/enclave_proc/resource_manager.rs:747", "Enclave terminated.", string.format("enc-%s:%d", e.slot, e.pid))
      uv.fs_unlink(ctx.root .. "/var/run/nitro_enclaves/" .. e.slot .. ".sock")
      out[#out + 1] = util.obj{ "EnclaveName", e.name, "EnclaveID", e.id, "Terminated", true }
    end
    local gone = {}
    for _, e in ipairs(targets) do gone[e.id] = true end
    local keep = {}
    for _, e in ipairs(st.enclaves) do if not gone[e.id] then keep[#keep + 1] = e end end
    st.enclaves = keep
    if #targets > 0 then st.cpus_released_at = util.time() end
    require("nd.sim.allocator").write_sys(ctx.root, st)
    if o.all then ctx:stdout(util.json(out)) else ctx:stdout(util.json(out[1])) end
    return 0
  end)
end

function console(ctx, o)
  local e = with_state(ctx, function(st)
    for _, x in ipairs(st.enclaves) do
      if x.id == o["enclave-id"] or (o["enclave-name"] and x.name == o["enclave-name"]) then return x end
    end
  end)
  if not e and o["enclave-name"] then
    return ctx:fail{ code = "E58", action = "Enclave Console", subactions = { "Failed to construct Console arguments",
      "Get ID by Name", "No enclave matched the given name." }, file = "src/lib.rs", line = 547 }
  end
  if not e then return unknown_enclave(ctx, o["enclave-id"], "Enclave Console") end
  local timeout
  if o["disconnect-timeout"] then
    timeout = u_arg(o["disconnect-timeout"])
    if not timeout then
      return ctx:fail{ code = "E03", info = { "disconnect-timeout", o["disconnect-timeout"] }, action = "Enclave Console",
        subactions = { "Failed to construct Console arguments", "Parse disconnect timeout",
          "`disconnect-timeout` argument can't be parsed as a number" }, file = "src/common/commands_parser.rs", line = 469 }
    end
  end
  if not e.debug then
    return ctx:fail{ code = "E44", action = "Enclave Console",
      subactions = { "Failed to connect to enclave console",
        "The enclave was not started with the debug flag set, include '--debug-mode' in the run-enclave command" },
      file = "src/main.rs", line = 263 }
  end
  return console_connect(ctx, e, timeout, "Enclave Console")
end

function describe_eif(ctx, o)
  local path = resolve(ctx, o["eif-path"])
  local lib = eif_lib()
  local text, err
  if lib then text, err = lib.describe(path) else err = "the EIF reader (nd.eif) is not built in" end
  if not text then
    return ctx:fail{ code = "E35", action = "Describe EIF", subactions = { "Failed to describe EIF",
      string.format("Failed to initialize EIF reader: %q", tostring(err)) }, file = "src/lib.rs", line = 225 }
  end
  ctx:stdout(text)
  return 0
end

function explain(ctx, o)
  local code = o["error-code"]
  local norm = code:match("^E%d%d$") and code or nil
  ctx:stderr(norm and NE.explain_text(norm) or ("No such error code " .. code))
  return 0
end

function build_enclave(ctx, o)
  local st = state.load(ctx.root)
  ctx.version = st.host.nitro_cli_version
  ctx:log("INFO", "src/main.rs:64", "Start Nitro CLI")
  ctx:stderr("Start building the Enclave Image...")
  local out = o["output-file"]
  local fd = uv.fs_open(out, "w", tonumber("644", 8))
  if not fd then
    return ctx:fail{ code = "E19", info = { out, "Open" },
      action = "Build Enclave", subactions = { "Failed to build enclave", "Failed to build EIF from docker",
        "Could not create output file: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }" },
      file = "src/lib.rs", line = 109 }
  end
  uv.fs_close(fd)
  local art = os.getenv("NITRO_CLI_ARTIFACTS")
  local home = os.getenv("HOME")
  if not art and not home then
    return ctx:fail{ code = "E51", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Could not find a folder for the CLI artifacts, set either HOME or NITRO_CLI_ARTIFACTS" },
      file = "src/lib.rs", line = 394 }
  end
  -- nitro-cli creates the artifacts folder (NITRO_CLI_ARTIFACTS, else $HOME/.nitro_cli/); an empty value cannot be
  -- created (E19). $HOME/.nitro_cli is made inside the simulated root: the simulation never touches the real home.
  local artifacts = art or (home .. "/.nitro_cli/")
  local real = artifacts
  if not art and artifacts:sub(1, #ctx.root) ~= ctx.root and artifacts:sub(1, 1) == "/" then real = ctx.root .. artifacts end
  if artifacts == "" or not fs.mkdir_p(real) then
    return ctx:fail{ code = "E19", info = { artifacts, "Create" },
      action = "Build Enclave", subactions = { "Failed to build enclave", "Failed to build EIF from docker",
        string.format("Could not create artifacts path %s: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }", artifacts) },
      file = "src/lib.rs", line = art and 376 or 386 }
  end
  local tag = o["docker-uri"]
  local cfg = st.images[tag] or (not tag:find(":") and st.images[tag .. ":latest"])
  -- a Docker daemon whose API nitro-cli's client (shiplift) does not speak: the pull fails although the image is
  -- there (aws/aws-nitro-enclaves-cli#537)
  if st.host.docker_api_too_new then cfg = nil end
  if not cfg then
    ctx:stderr("Docker error: PullError")
    return ctx:fail{ code = "E50", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Failed to pull docker image: PullError" }, file = "src/lib.rs", line = 164 }
  end
  ctx:stderr("Using the locally available Docker image...")
  local pcrs, err = write_eif(out, tag, cfg, nil, eif_arch(st, cfg), st)
  if not pcrs then
    return ctx:fail{ code = "E48", action = "Build Enclave", subactions = { "Failed to build enclave",
      "Failed to build EIF from docker", "Failed to create EIF image: " .. tostring(err) }, file = "src/lib.rs", line = 147 }
  end
  ctx:stderr("Enclave Image successfully created.")
  local kv = { "HashAlgorithm", "Sha384 { ... }", "PCR0", pcrs.PCR0, "PCR1", pcrs.PCR1, "PCR2", pcrs.PCR2 }
  ctx:stdout(util.json(util.obj{ "Measurements", util.obj(kv) }))
  return 0
end

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
  -- clap runs before anything else in nitro-cli (app.get_matches() in main): usage errors, help and --version
  -- never read the host; the version only selects clap's suggestions and the --version line
  local st0 = state.load(root)
  local r = clap.parse(args, st0 and st0.host.nitro_cli_version or "1.4.2")
  if r.text then
    local f = r.stream == "stdout" and ctx.out or ctx.err
    f:write(r.text) f:flush()
    return r.exit
  end
  local fn = SUBS[r.sub]
  if not fn then
    ctx:stderr("nitro-cli (nitrodiag simulator): `" .. r.sub .. "` is not simulated")
    return 1
  end
  local ok, lerr = state.load(root)
  if not ok then
    ctx:stderr("nitro-cli (nitrodiag simulator): " .. tostring(lerr))
    return 1
  end
  return fn(ctx, r.opts)
end

return M

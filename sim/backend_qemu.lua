-- nd.sim.backend_qemu — the `qemu` boot backend of the simulated host: run-enclave boots the EIF for real under
-- QEMU's nitro-enclave machine (QEMU >= 9.2 built with libcbor and vhost-user: tools/build-qemu.sh), with
-- nd-vhost-vsock as its vhost-user-vsock device. docs/realboot.md tells the whole story; in short:
--
--   run-enclave ─ spawns ─> nd-sim-enclave (this file's supervise(): "the enclave process", detached, one per
--                           enclave, owner of everything below; it dies with the simulated host's owner)
--                             ├─ nd-vhost-vsock --socket RUN/vhost.sock --uds-path RUN/v.sock --guest-cid CID
--                             │     guest → host port P: unix RUN/v.sock_P;  host → guest: RUN/v.sock + CONNECT P
--                             ├─ qemu-system-x86_64 -M nitro-enclave,vsock=c0,id=ID,acpi=on -kernel EIF …
--                             │     serial console → RUN/console.log
--                             └─ the heartbeat listener on RUN/v.sock_9000 (CID 3 port 9000: 0xB7 → 0xB7)
--   RUN = <sim root>/var/run/nitro_enclaves/q-<slot>/, RUN/status.json says booting | running | stopped.
--
-- The backend interface (nd.sim.backend) gets what it needs beyond the stand-in's plan: plan.live = true and
-- plan.run; nitro-cli's stand-in asks alive(plan), stream_console(…), stop(plan) and wait_boot(plan); nd.sim.vsock
-- routes vsock:CID:PORT through connect(plan, port). The EIFs the simulator writes for this backend hold a real
-- kernel and ramdisks (eif_parts): tools/fetch-enclave-kernel.sh's kernel, nitrodiag-bootstrap as the bootstrap
-- ramdisk's /init with the kernel modules, and a rootfs with nitrodiag-init and vsock-pingpong (the test image).
-- When something is missing, available() says what in one line and the simulator uses the scripted stand-in.
local uv = require "luv"
local fs = require "nd.fs"

local M = { name = "qemu" }

M.QEMU_VERSION = "10.0.2" -- what tools/build-qemu.sh builds (its cache directory is named after it)
M.MODULES = { "virtio_mmio", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport" }

-- ---- finding the pieces -------------------------------------------------------------------------------------------

local home_cache = require("nd.sim.util").user_cache_dir

local function env(k)
  local v = os.getenv(k)
  if v and v ~= "" then return v end
  return nil
end

local function executable(p)
  local st = p and uv.fs_stat(p)
  return st and st.type == "file" and uv.fs_access(p, "X") and p or nil
end

-- Directories searched for nitrodiag's own programs: beside the binary (the build tree: enclave/, vhost/), the
-- installed enclave-bin directory, then PATH.
local function prog_dirs()
  local dirs = {}
  if env("NITRODIAG_ENCLAVE_BIN") then dirs[#dirs + 1] = env("NITRODIAG_ENCLAVE_BIN") end
  local ok, exe = pcall(function() return require("nd.host").exe() end)
  if ok and exe then
    local real = uv.fs_realpath(exe) or exe
    for _, e in ipairs({ exe, real }) do
      local d = fs.dirname(e)
      for _, sub in ipairs({ "", "/enclave", "/vhost", "/../enclave", "/../vhost", "/../libexec/nitrodiag" }) do
        dirs[#dirs + 1] = d .. sub
      end
    end
  end
  local ok2, share = pcall(function() return require("nd.host").share_dir() end)
  if ok2 and share then dirs[#dirs + 1] = share .. "/enclave-bin" end
  for d in (os.getenv("PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  return dirs
end

local function find_prog(name, var)
  if var and env(var) then return executable(env(var)) end
  for _, d in ipairs(prog_dirs()) do
    local p = executable(d .. "/" .. name)
    if p then return p end
  end
  return nil
end

-- Runs argv to completion (short commands only); returns stdout or nil.
local function capture(argv)
  local ok, proc = pcall(require, "nd.proc")
  if not ok or type(proc) ~= "table" or not proc.run then return nil end
  local call = { timeout = 10 }
  for i, a in ipairs(argv) do call[i] = a end
  local okc, r = pcall(proc.run, call)
  if okc and type(r) == "table" and r.exit_code == 0 then return r.stdout end
  return nil
end

local qemu_cache = {}
-- qemu() -> path of a qemu-system-x86_64 that has the nitro-enclave machine | nil, why
function M.qemu()
  local cands = {}
  if env("NITRODIAG_QEMU") then cands = { env("NITRODIAG_QEMU") }
  else
    local c = env("NITRODIAG_QEMU_CACHE") or (home_cache() and (home_cache() .. "/qemu-" .. M.QEMU_VERSION))
    -- tools/build-qemu.sh checked `-M help` before it wrote its marker
    if c and fs.exists(c .. "/.nitrodiag-complete") and executable(c .. "/bin/qemu-system-x86_64") then
      return c .. "/bin/qemu-system-x86_64"
    end
    for d in (os.getenv("PATH") or ""):gmatch("[^:]+") do
      if not d:find("nitrodiag%-sim") then cands[#cands + 1] = d .. "/qemu-system-x86_64" end
    end
  end
  local why = "no QEMU with the nitro-enclave machine (build one: tools/build-qemu.sh, or set NITRODIAG_QEMU)"
  for _, p in ipairs(cands) do
    if executable(p) then
      if qemu_cache[p] == nil then
        -- `-M help` lists the machine; where commands cannot be run (a simulated host's stand-ins run only its
        -- own tools) the binary is taken as it is: QEMU itself refuses the machine later, in one line
        local out = capture({ p, "-M", "help" })
        qemu_cache[p] = out == nil or out:find("\nnitro%-enclave ") ~= nil
      end
      if qemu_cache[p] then return p end
      why = p .. " has no nitro-enclave machine (QEMU >= 9.2 built with libcbor: tools/build-qemu.sh)"
    end
  end
  return nil, why
end

-- kernel() -> directory with vmlinuz and modules/*.ko | nil, why
function M.kernel()
  local d = env("NITRODIAG_KERNEL_CACHE") or (home_cache() and home_cache() .. "/enclave-kernel")
  if not d or not fs.exists(d .. "/vmlinuz") then
    return nil, "no enclave kernel (fetch it: tools/fetch-enclave-kernel.sh)"
  end
  for _, m in ipairs(M.MODULES) do
    if not fs.exists(d .. "/modules/" .. m .. ".ko") then return nil, "enclave kernel in " .. d .. " lacks " .. m .. ".ko" end
  end
  return d
end

-- pieces() -> { qemu, vhost, kernel, bootstrap, init, pingpong } | nil, why (one line)
local function vhost()
  local p = find_prog("nd-vhost-vsock", "NITRODIAG_VHOST_VSOCK")
  if p then return p end
  if env("NITRODIAG_VHOST_VSOCK") then return nil, "NITRODIAG_VHOST_VSOCK=" .. env("NITRODIAG_VHOST_VSOCK") .. " is not an executable" end
  return nil, "nd-vhost-vsock (the vhost-user-vsock backend) is not built or not on PATH"
end

function M.pieces()
  local p, why = {}, nil
  p.qemu, why = M.qemu()
  if not p.qemu then return nil, why end
  p.vhost, why = vhost()
  if not p.vhost then return nil, why end
  p.kernel, why = M.kernel()
  if not p.kernel then return nil, why end
  for k, name in pairs({ bootstrap = "nitrodiag-bootstrap", init = "nitrodiag-init", pingpong = "vsock-pingpong" }) do
    p[k] = find_prog(name)
    if not p[k] then return nil, name .. " (static enclave program) is not built" end
  end
  return p
end

-- available() -> true | nil, one line saying what is missing
function M.available()
  local p, why = M.pieces()
  if not p then return nil, why end
  return true
end

-- kvm() -> true when /dev/kvm can be opened read-write by this process
function M.kvm()
  if env("NITRODIAG_QEMU_ACCEL") then return env("NITRODIAG_QEMU_ACCEL") == "kvm" end
  local fd = uv.fs_open("/dev/kvm", "r+", 0)
  if not fd then return false end
  uv.fs_close(fd)
  return true
end

-- ---- the EIF's contents -------------------------------------------------------------------------------------------

-- newc cpio: entries { name, mode (number, with type bits), data | nil, rdev = {maj, min} | nil }
local function cpio(entries)
  local out = {}
  local function pad(n) return ("\0"):rep((4 - n % 4) % 4) end
  local function hdr(ino, e)
    local data = e.data or ""
    local name = e.name .. "\0"
    local rmaj, rmin = 0, 0
    if e.rdev then rmaj, rmin = e.rdev[1], e.rdev[2] end
    local h = string.format("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
      ino, e.mode, 0, 0, (e.mode & 0xF000) == 0x4000 and 2 or 1, 0, #data, 0, 0, rmaj, rmin, #name, 0)
    out[#out + 1] = h .. name .. pad(#h + #name)
    out[#out + 1] = data .. pad(#data)
  end
  for i, e in ipairs(entries) do hdr(i, e) end
  hdr(0, { name = "TRAILER!!!", mode = 0 })
  local s = table.concat(out)
  return s .. ("\0"):rep((512 - #s % 512) % 512)
end
M.cpio = cpio

local DIR, EXE, FILE, CHR = 0x41ED, 0x81ED, 0x81A4, 0x2180 -- 0755 dir, 0755 file, 0644 file, 0600 char device

local function must_read(p)
  local d, err = fs.read(p)
  if not d then error("qemu backend: cannot read " .. p .. ": " .. tostring(err), 0) end
  return d
end

-- eif_parts(command, env_list) -> { kernel, ramdisks = {bootstrap, customer} } | nil, why.  command: the image's
-- command (Cmd, else Entrypoint: what /cmd holds, one argument per line); env_list: its Env ("K=V" strings).
function M.eif_parts(command, env_list)
  local p, why = M.pieces()
  if not p then return nil, why end
  local boot = {
    { name = "dev", mode = DIR }, { name = "dev/console", mode = CHR, rdev = { 5, 1 } },
    { name = "proc", mode = DIR }, { name = "sys", mode = DIR }, { name = "lib", mode = DIR },
    { name = "lib/modules", mode = DIR },
    { name = "init", mode = EXE, data = must_read(p.bootstrap) },
    { name = "nsm.ko", mode = FILE, data = must_read(p.kernel .. "/modules/nsm.ko") },
  }
  for _, m in ipairs(M.MODULES) do
    boot[#boot + 1] = { name = "lib/modules/" .. m .. ".ko", mode = FILE, data = must_read(p.kernel .. "/modules/" .. m .. ".ko") }
  end
  local init, pingpong = must_read(p.init), must_read(p.pingpong)
  local lines = function(t)
    local s = {}
    for _, v in ipairs(t or {}) do s[#s + 1] = tostring(v) .. "\n" end
    return table.concat(s)
  end
  local customer = {
    { name = "rootfs", mode = DIR },
  }
  for _, d in ipairs({ "dev", "proc", "sys", "run", "tmp", "etc" }) do customer[#customer + 1] = { name = "rootfs/" .. d, mode = DIR } end
  customer[#customer + 1] = { name = "rootfs/init", mode = EXE, data = init }
  customer[#customer + 1] = { name = "rootfs/nitrodiag-init", mode = EXE, data = init }
  customer[#customer + 1] = { name = "rootfs/vsock-pingpong", mode = EXE, data = pingpong }
  customer[#customer + 1] = { name = "cmd", mode = FILE, data = lines(command) }
  customer[#customer + 1] = { name = "env", mode = FILE, data = lines(env_list) }
  return { kernel = must_read(p.kernel .. "/vmlinuz"), ramdisks = { cpio(boot), cpio(customer) } }
end

-- ---- the enclave process (supervisor) -----------------------------------------------------------------------------

local function now_s() return uv.hrtime() / 1e9 end

-- Waits s seconds (real time): yields to the loop inside a coroutine (so sockets and timers of this process go on),
-- blocks otherwise. Either way the loop's clock is brought up to date afterwards: a libuv timer started after a
-- blocking wait would otherwise count from a stale time and fire at once.
local function nap(s)
  local ok = coroutine.isyieldable() and pcall(require("nd").sleep, s, { real = true })
  if not ok then uv.sleep(math.floor(s * 1000 + 0.5)) end
  uv.update_time()
end

local function read_json(path)
  local text = fs.read(path)
  if not text then return nil end
  local ok, t = pcall(require("cjson").decode, text)
  return ok and type(t) == "table" and t or nil
end

-- status(plan) -> the supervisor's status table ({state = booting|running|stopped, …}) or nil
function M.status(plan)
  return plan and plan.run and read_json(plan.run .. "/status.json")
end

-- whether pid runs (a zombie does not: it has exited, its parent has not reaped it yet)
local function pid_alive(pid)
  if type(pid) ~= "number" or pid <= 1 then return false end
  local ok = uv.kill(pid, 0)
  if not (ok == 0 or ok == true) then return false end
  local stat = fs.read("/proc/" .. math.tointeger(pid) .. "/stat")
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

-- alive(plan) -> whether the enclave (its supervisor) still runs
function M.alive(plan)
  local s = M.status(plan)
  if s and s.state == "stopped" then return false end
  return pid_alive(plan and plan.pid)
end

-- The backend's boot: starts the supervisor for the enclave b describes and returns the plan at once (wait_boot
-- waits for the heartbeat). b: { eif (real path), id, slot, root, cid, memory_mib, cpus (count), debug }.
local Qemu = { name = "qemu" }
Qemu.__index = Qemu

-- runtime() -> { qemu, vhost } | nil, why: what booting any EIF needs (eif_parts needs the rest of pieces()).
function M.runtime()
  local q, why = M.qemu()
  if not q then return nil, why end
  local v, vwhy = vhost()
  if not v then return nil, vwhy end
  return { qemu = q, vhost = v }
end

-- start(o) -> plan | nil, why. Boots the EIF o.eif in the background under a detached supervisor (the enclave
-- process). o: { eif, run (a private directory, created; unix socket paths under it must stay short), id, cid,
-- memory_mib, cpus, owner (a pid: the enclave stops when it dies), root (a directory: ditto when it disappears),
-- remove (a directory the supervisor removes when it stopped because the owner died) }.
-- plan = { live = true, run, pid (the supervisor, leader of the process group), accel }.
function M.start(o)
  local rt, why = M.runtime()
  if not rt then return nil, why end
  local run = o.run
  if #run > 80 then return nil, "run directory path too long for unix sockets (" .. #run .. " bytes): " .. run end
  local ok, merr = fs.mkdir_p(run, tonumber("700", 8))
  if not ok then return nil, "cannot create " .. run .. ": " .. tostring(merr) end
  local spec = {
    root = o.root or run, run = run, qemu = rt.qemu, vhost = rt.vhost, eif = o.eif, id = o.id or "i-enc",
    cid = o.cid or 16, memory_mib = o.memory_mib or 512, cpus = o.cpus or 1, kvm = M.kvm(), owner = o.owner,
    append = os.getenv("NITRODIAG_QEMU_APPEND"), remove = o.remove,
  }
  fs.write(run .. "/spec.json", require("cjson").encode(spec))
  local link = run .. "/nd-sim-enclave"
  uv.fs_unlink(link)
  uv.fs_symlink(require("nd.host").exe(), link)
  local log = uv.fs_open(run .. "/supervisor.log", "a", tonumber("600", 8))
  local nul = uv.fs_open("/dev/null", "r+", 0)
  local handle, pid = uv.spawn(link, { args = { run .. "/spec.json" }, stdio = { nul, log, log }, detached = true },
    function() end)
  if nul then uv.fs_close(nul) end
  if log then uv.fs_close(log) end
  if not handle then return nil, "cannot start the enclave process: " .. tostring(pid) end
  handle:unref()
  return { live = true, backend = "qemu", run = run, pid = pid, lines = {},
    why = "booted under QEMU (" .. (spec.kvm and "KVM if it works, else TCG" or "TCG") .. ")" }
end

function Qemu:boot(b)
  local root = b.root or require("nd.sim.util").sim_root()
  local eif = b.eif
  if eif and eif:sub(1, 1) == "/" and not fs.exists(eif) and fs.exists(root .. eif) then eif = root .. eif end
  local plan, why = M.start{ eif = eif, run = root .. "/var/run/nitro_enclaves/q-" .. tostring(b.slot or uv.hrtime()),
    id = b.id, cid = b.cid, memory_mib = b.memory_mib, cpus = b.cpus, root = root,
    owner = tonumber(os.getenv("NITRODIAG_SIM_OWNER") or "") }
  if not plan then
    return { lines = { { t = 0, text = "nitrodiag: qemu backend: " .. why } }, stops_after = 0, why = why }
  end
  return plan
end

-- wait_boot(plan [, timeout_s]) -> true | nil, why: waits (real time) for the heartbeat, or the enclave's end.
function M.wait_boot(plan, timeout)
  local deadline = now_s() + (timeout or tonumber(os.getenv("NITRODIAG_QEMU_BOOT_TIMEOUT") or "") or 120)
  while now_s() < deadline do
    local s = M.status(plan)
    if s and s.heartbeat then return true end
    if (s and s.state == "stopped") or not pid_alive(plan.pid) then
      return nil, "the enclave stopped before its heartbeat" .. (s and s.why and (": " .. s.why) or "")
    end
    nap(0.05)
  end
  return nil, "no heartbeat within the boot timeout"
end

-- stop(plan): stops the enclave (supervisor, QEMU, nd-vhost-vsock) and waits until they are gone.
function M.stop(plan)
  if not plan or not plan.pid then return end
  local pgid = plan.pid
  uv.kill(pgid, "sigterm")
  local deadline = now_s() + 5
  -- gone, or said it stopped (a supervisor we spawned ourselves stays a zombie until our loop reaps it)
  local function done() return not pid_alive(pgid) end
  while not done() and now_s() < deadline do nap(0.02) end
  -- the whole group (the supervisor is its leader): whatever is left
  pcall(uv.kill, -pgid, "sigkill")
  if pid_alive(pgid) then pcall(uv.kill, pgid, "sigkill") end
end

-- stop_all(root): every live enclave of the simulated host at root (sim:close).
function M.stop_all(root)
  local ok, st = pcall(function() return require("nd.sim.state").load(root) end)
  if not ok or type(st) ~= "table" then return end
  for _, e in ipairs(st.enclaves or {}) do
    if e.plan and e.plan.live then M.stop(e.plan) end
  end
end

-- stream_console(ctx, e, timeout, still_there) -> "stopped" when the enclave ended by itself, 0 when it was
-- terminated or timeout seconds (real) passed. Copies RUN/console.log from its start, then follows it.
function M.stream_console(out, plan, timeout, still_there)
  local path = plan.run .. "/console.log"
  local off, t0, partial = 0, now_s(), ""
  local function drain()
    local fd = uv.fs_open(path, "r", 0)
    if not fd then return end
    while true do
      local data = uv.fs_read(fd, 65536, off)
      if not data or #data == 0 then break end
      off = off + #data
      local text = (partial .. data):gsub("\r", "")
      local last_nl = text:match(".*()\n")
      if last_nl then
        out:write(text:sub(1, last_nl))
        partial = text:sub(last_nl + 1)
      else
        partial = text
      end
    end
    uv.fs_close(fd)
    out:flush()
  end
  while true do
    drain()
    if not M.alive(plan) then
      drain()
      if partial ~= "" then out:write(partial, "\n") out:flush() end
      return "stopped"
    end
    if timeout and now_s() - t0 >= timeout then return 0 end
    if still_there and not still_there() then return 0 end
    nap(0.05)
  end
end

-- connect(plan, port) -> an nd.vsock connection to the guest's port (through nd-vhost-vsock: CONNECT <port>)
-- | nil, err, code
function M.connect(plan, port)
  local vsock = require "nd.vsock"
  local c, err, code = vsock.connect("unix:" .. plan.run .. "/v.sock", { timeout = 5 })
  if not c then return nil, err, code end
  c:write(string.format("CONNECT %d\n", port))
  local line, rerr = "", nil
  while not line:find("\n") do
    local d, e = c:read(1, { timeout = 5 })
    if not d or d == "" then rerr = e break end
    line = line .. d
  end
  if not line:match("^OK %d+") then
    c:close()
    return nil, string.format("vsock port %d of the enclave: nothing listens (%s)", port,
      line ~= "" and line:gsub("%s+$", "") or tostring(rerr or "connection closed")), "ECONNRESET"
  end
  return c
end

-- relay(path, plan, port) -> server | nil, err, code: a unix socket at path whose every connection is joined, both
-- ways, to the guest's port through nd-vhost-vsock (CONNECT <port>), until either side closes (nd.sim.vsock routes
-- vsock:CID:PORT there). Plain luv streams: a read pending on one side never blocks a write to it.
-- server = { listener = { close = fn }, task = { cancel = fn } } (what nd.sim.vsock keeps for its own servers).
function M.relay(path, plan, port)
  uv.fs_unlink(path)
  local srv = uv.new_pipe(false)
  local ok, err, code = srv:bind(path)
  if not ok then srv:close() return nil, "relay " .. path .. ": " .. tostring(err), code end
  local open = {}
  local function close(h) if h and not h:is_closing() then h:close() end open[h] = nil end
  srv:listen(16, function()
    local c = uv.new_pipe(false)
    if not srv:accept(c) then c:close() return end
    open[c] = true
    local g = uv.new_pipe(false)
    open[g] = true
    local function done() close(c) close(g) end
    -- one side ended: the other gets what is still queued for it (shutdown waits for pending writes), then both close
    local function ended(other)
      if other:is_closing() then done() return end
      local okh = pcall(other.shutdown, other, function() done() end)
      if not okh then done() end
    end
    local pending = {} -- what the host sent before the guest's side was connected
    local joined = false
    c:read_start(function(rerr, data)
      if rerr or not data then if joined then ended(g) else done() end return end
      if joined then g:write(data) else pending[#pending + 1] = data end
    end)
    g:connect(plan.run .. "/v.sock", function(cerr)
      if cerr then done() return end
      g:write(string.format("CONNECT %d\n", port))
      local line = ""
      g:read_start(function(rerr, data)
        if rerr or not data then if joined then ended(c) else done() end return end
        if joined then c:write(data) return end
        line = line .. data
        local nl = line:find("\n", 1, true)
        if not nl then
          if #line > 64 then done() end
          return
        end
        if not line:match("^OK %d+") then done() return end -- the guest refused: the host sees the connection close
        joined = true
        local rest = line:sub(nl + 1)
        if #rest > 0 then c:write(rest) end
        for _, d in ipairs(pending) do g:write(d) end
        pending = {}
      end)
    end)
  end)
  return { listener = { close = function()
    close(srv)
    for h in pairs(open) do close(h) end
    uv.fs_unlink(path)
  end }, task = { cancel = function() end } }
end

-- supervise(args) -> exit status: the body of `nd-sim-enclave SPEC.json` (see the top of this file).
function M.supervise(args)
  local nd = require "nd"
  local cjson = require "cjson"
  local spec = args[1] and read_json(args[1])
  if not spec then io.stderr:write("nd-sim-enclave: usage: nd-sim-enclave SPEC.json\n") return 2 end
  for _, k in ipairs({ "cid", "memory_mib", "cpus", "owner" }) do -- JSON numbers come back as floats
    if type(spec[k]) == "number" then spec[k] = math.tointeger(spec[k]) or math.floor(spec[k]) end
  end
  local run = spec.run
  local status = { state = "booting", supervisor = uv.os_getpid(), started = os.time() }
  local function save() fs.write_atomic(run .. "/status.json", cjson.encode(status)) end
  save()
  local children, stopping = {}, false
  local function log(msg) io.stderr:write(os.date("!%H:%M:%S "), msg, "\n") io.stderr:flush() end
  local setpriv = executable("/usr/bin/setpriv") or executable("/bin/setpriv")
  local function start(name, argv, stdio)
    local file = argv[1]
    local a = { table.unpack(argv, 2) }
    if setpriv then -- the child dies with us, however we die (PR_SET_PDEATHSIG)
      a = { "--pdeathsig", "KILL", "--", table.unpack(argv) }
      file = setpriv
    end
    local rec = {}
    local h, pid = uv.spawn(file, { args = a, stdio = stdio }, function(code, sig)
      rec.exited, rec.code, rec.sig = true, code, sig
    end)
    if not h then return nil, pid end
    rec.handle, rec.pid = h, pid
    children[name] = rec
    log(name .. " started, pid " .. tostring(pid))
    return pid
  end
  local function kill_all(sig)
    for _, c in pairs(children) do if not c.exited then pcall(uv.kill, c.pid, sig) end end
  end
  local function finish(why)
    if stopping then return end
    stopping = true
    status.state, status.why = "stopping", why
    save()
    log("stopping: " .. why)
  end
  local sigs = {}
  for _, s in ipairs({ "sigterm", "sigint", "sighup" }) do
    local h = uv.new_signal()
    h:start(s, function() finish("terminated (" .. s .. ")") end)
    sigs[#sigs + 1] = h
  end
  -- the heartbeat: nd-vhost-vsock hands CID 3 port 9000 to RUN/v.sock_9000 (started --no-heartbeat)
  local hb_path = run .. "/v.sock_9000"
  uv.fs_unlink(hb_path)
  local hb = uv.new_pipe(false)
  assert(hb:bind(hb_path))
  hb:listen(4, function()
    local c = uv.new_pipe(false)
    hb:accept(c)
    c:read_start(function(err, data)
      if err or not data then c:close() return end
      if data:byte(1) == 0xB7 then
        c:write(string.char(0xB7), function() c:close() end)
        c:read_stop()
        status.heartbeat, status.state = true, "running"
        save()
        log("heartbeat received and answered")
      end
    end)
  end)
  -- nd-vhost-vsock, then QEMU on its socket; accel "kvm" or "tcg"
  local function launch(accel)
    uv.fs_unlink(run .. "/vhost.sock")
    local logfd = uv.fs_open(run .. "/vhost.log", "a", tonumber("600", 8))
    local ok, err = start("vhost", { spec.vhost, "--socket", run .. "/vhost.sock", "--uds-path", run .. "/v.sock",
      "--guest-cid", tostring(spec.cid), "--no-heartbeat", "--once" }, { nil, logfd, logfd })
    if logfd then uv.fs_close(logfd) end
    if not ok then finish("cannot start nd-vhost-vsock: " .. tostring(err)) return end
    local t0 = now_s()
    while not stopping and not fs.exists(run .. "/vhost.sock") do
      if children.vhost.exited then finish("nd-vhost-vsock exited before it listened") return end
      if now_s() - t0 > 10 then finish("nd-vhost-vsock did not create its socket within 10 s") return end
      nd.sleep(0.02, { real = true })
    end
    if stopping then return end
    local qlog = uv.fs_open(run .. "/qemu.log", "a", tonumber("600", 8))
    local ncpu = #(uv.cpu_info() or { 1 })
    local argv = { spec.qemu, "-M", string.format("nitro-enclave,vsock=c0,id=%s,acpi=on", spec.id),
      "-m", tostring(math.min(spec.memory_mib, tonumber(os.getenv("NITRODIAG_QEMU_MAX_MIB") or "") or 2048)) .. "M",
      "-smp", tostring(math.max(1, math.min(spec.cpus, ncpu))),
      "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
      "-chardev", "socket,id=c0,path=" .. run .. "/vhost.sock",
      "-chardev", "file,id=con,path=" .. run .. "/console.log", "-serial", "chardev:con",
      "-kernel", spec.eif }
    -- appended to the EIF's command line (not measured): under TCG the kernel cannot calibrate the TSC on this
    -- machine (no PIT speaker gate, no HPET) and would hang with time standing still; nitrodiag.pcrs makes
    -- nitrodiag-bootstrap print the PCRs it reads from /dev/nsm (AWS's init ignores both)
    local append = { "nitrodiag.pcrs" }
    if accel == "kvm" then
      for _, x in ipairs({ "-accel", "kvm", "-cpu", "host" }) do argv[#argv + 1] = x end
    else
      for _, x in ipairs({ "-accel", "tcg" }) do argv[#argv + 1] = x end
      append[#append + 1] = "tsc_early_khz=2000000"
    end
    if spec.append and spec.append ~= "" then append[#append + 1] = spec.append end
    argv[#argv + 1] = "-append"
    argv[#argv + 1] = table.concat(append, " ")
    log("qemu: " .. table.concat(argv, " "))
    local qok, qerr = start("qemu", argv, { nil, qlog, qlog })
    if qlog then uv.fs_close(qlog) end
    if not qok then finish("cannot start QEMU: " .. tostring(qerr)) return end
    status.qemu, status.vhost, status.accel = children.qemu.pid, children.vhost.pid, accel
    status.qemu_started = now_s()
    save()
  end
  launch(spec.kvm and "kvm" or "tcg")
  -- run until QEMU ends (the guest rebooted or powered off), we are told to stop, or the owner is gone
  while not stopping do
    if children.vhost and children.vhost.exited and children.qemu and not children.qemu.exited then
      -- QEMU going away ends nd-vhost-vsock (--once): give QEMU's own exit a moment to be seen first
      local tw = now_s()
      while not children.qemu.exited and now_s() - tw < 2 do nd.sleep(0.02, { real = true }) end
    end
    if children.qemu and children.qemu.exited and status.accel == "kvm" and not status.heartbeat
      and now_s() - status.qemu_started < 5 then
      -- /dev/kvm opened but KVM does not work here (nested virtualization without the CPU features): TCG
      log("QEMU under KVM ended at once (status " .. tostring(children.qemu.code) .. "): trying again under TCG")
      if not children.vhost.exited then pcall(uv.kill, children.vhost.pid, "sigterm") end
      local tw = now_s()
      while not children.vhost.exited and now_s() - tw < 3 do nd.sleep(0.02, { real = true }) end
      for _, c in pairs(children) do if not c.handle:is_closing() then c.handle:close() end end
      children = {}
      launch("tcg")
    elseif children.qemu and children.qemu.exited then
      local q = children.qemu
      finish(q.sig ~= 0 and ("QEMU killed by signal " .. q.sig) or ("QEMU exited with status " .. tostring(q.code)))
      break
    end
    if children.vhost and children.vhost.exited and not (children.qemu and children.qemu.exited) then
      finish("nd-vhost-vsock exited")
      break
    end
    if status.heartbeat and not status.pcrs and not status.pcrs_given_up then
      -- the PCRs the guest read from QEMU's NSM (nitrodiag-bootstrap prints them; other inits do not)
      local con = fs.read(run .. "/console.log") or ""
      local p = {}
      for n, hex in con:gmatch("%[bootstrap%] PCR(%d+) (%x+)") do p["PCR" .. n] = hex end
      if p.PCR0 and p.PCR1 and p.PCR2 then
        status.pcrs = p
        save()
      elseif con:find("[init]", 1, true) or #con > 4 * 1048576 or now_s() - (status.qemu_started or 0) > 120 then
        status.pcrs_given_up = true -- past the bootstrap without them
      end
    end
    if (spec.owner and not pid_alive(spec.owner)) or not fs.is_dir(spec.root) then
      finish("the simulated host is gone")
      break
    end
    nd.sleep(0.1, { real = true })
  end
  -- stop the children: SIGTERM, then SIGKILL after 3 s
  kill_all("sigterm")
  local t1 = now_s()
  while now_s() - t1 < 3 do
    local left = false
    for _, c in pairs(children) do if not c.exited then left = true end end
    if not left then break end
    nd.sleep(0.02, { real = true })
  end
  kill_all("sigkill")
  local t2 = now_s()
  while now_s() - t2 < 2 do
    local left = false
    for _, c in pairs(children) do if not c.exited then left = true end end
    if not left then break end
    nd.sleep(0.02, { real = true })
  end
  for _, c in pairs(children) do if not c.handle:is_closing() then c.handle:close() end end
  for _, h in ipairs(sigs) do h:close() end
  hb:close()
  uv.fs_unlink(hb_path)
  status.state = "stopped"
  save()
  log("stopped: " .. tostring(status.why))
  if spec.remove and spec.owner and not pid_alive(spec.owner) then
    fs.rm_rf(spec.remove) -- the owner died before it could clean up its temporary directory (e.g. nitrodiag boot)
  end
  return 0
end

M.backend = setmetatable({}, Qemu)

return M

-- nd.sim.backend — what "booting" an enclave means on the simulated host. A backend turns a started enclave (its
-- EIF, image configuration, debug flag) into a plan: the console lines it prints (with their time since start) and
-- when it stops by itself. nitro-cli's stand-in only talks to this interface; the `qemu` backend
-- (nd.sim.backend_qemu, docs/realboot.md) boots the EIF for real under QEMU's nitro-enclave machine and returns a
-- live plan (plan.live: a running enclave behind it) instead of scripted lines.
--
--   backend.get(name) -> backend | nil, err
--   backend:boot{ image = cfg, cmdline = s, memory_mib = n, debug = bool, cid = n } -> plan
--   plan = { lines = { {t = seconds, text = "…"}, … }, stops_after = seconds | nil (runs until terminated),
--            every = { period = s, text = "…" } | nil (a line printed periodically while it runs; a %d (or %4d) in text is
--            the count from 1), listen = { {port = 5000, proto = "pingpong"} } | nil (vsock ports the application
--            serves; nd.sim.vsock answers them), why = "…" }
--
-- The stand-in applies the rules of the AWS bootstrap init (docs/nitro.md "Enclave boot"): the command is the
-- image's Cmd when it has one, else its Entrypoint; `/bin/sh -c …` in an image without a shell, or an application
-- that exits at once, makes init reboot the enclave: the console shows `reboot: Restarting system` right after the
-- kernel lines (and whatever the command printed before it exited, e.g. an echo). The test images of docs/enclave.md print what they print on real hosts.
local M = {}

local CMDLINE = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"

local function stamp(t) return string.format("[%5d.%06d] ", math.floor(t), math.floor((t % 1) * 1e6 + 0.5)) end

local function kernel_lines(boot)
  local k = {
    { 0.0, "Linux version 4.14.256-209.484.amzn2.x86_64 (mockbuild@ip-10-0-36-26) (gcc version 7.3.1 20180712 (Red Hat 7.3.1-13) (GCC)) #1 SMP Tue Dec 7 20:44:44 UTC 2021" },
    { 0.0, "Command line: " .. (boot.cmdline or CMDLINE) },
    { 0.0, "x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'" },
    { 0.0, string.format("Memory: %dK/%dK available", boot.memory_mib * 1024 - 40960, boot.memory_mib * 1024) },
    { 0.016433, "smpboot: CPU0: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz (family: 0x6, model: 0x55, stepping: 0x7)" },
    { 0.201211, "Unpacking initramfs..." },
    { 0.411829, "Freeing initrd memory: 15172K" },
    { 0.707154, "nsm: loading out-of-tree module taints kernel." },
    { 0.707613, "nsm: module verification failed: signature and/or required key missing - tainting kernel" },
    { 0.718364, "random: init: uninitialized urandom read (16 bytes read)" },
  }
  local out = {}
  for _, l in ipairs(k) do out[#out + 1] = { t = l[1] / 10, text = stamp(l[1]) .. l[2] } end
  return out
end

-- The command init runs: Cmd when present, else Entrypoint (then Cmd as its arguments is empty anyway).
function M.command(cfg)
  local cmd = cfg.Cmd
  if type(cmd) == "table" and #cmd > 0 then return cmd end
  local ep = cfg.Entrypoint
  if type(ep) == "table" and #ep > 0 then return ep end
  return {}
end

local function env_of(cfg)
  local env = {}
  for _, kv in ipairs(cfg.Env or {}) do
    local k, v = tostring(kv):match("^([^=]+)=(.*)$")
    if k then env[k] = v end
  end
  return env
end

local function is_shell(p)
  return p == "/bin/sh" or p == "sh" or p == "/bin/bash" or p == "bash" or p == "/bin/ash"
end

-- What the application prints: returns lines (text list), exits (boolean), every (periodic line) and why.
local function app(cfg)
  local cmd = M.command(cfg)
  local env = env_of(cfg)
  if #cmd == 0 then return { why = "the image has neither Cmd nor Entrypoint: init has nothing to run", exits = true } end
  local prog = cmd[1]
  local script = ""
  if is_shell(prog) then
    if cfg.Shell == false then
      return { exits = true, why = string.format("the command is %s but the image has no shell", prog) }
    end
    script = table.concat(cmd, " ", 2)
  end
  local all = table.concat(cmd, " ")
  local kind = cfg.App
  if not kind then
    local base = prog:match("([^/]+)$")
    if base == "init" then kind = "init"
    elseif base == "vsock-pingpong" then kind = "vsock-pingpong"
    elseif all:find("busybox%-smoke") then kind = "busybox-smoke"
    elseif all:find("hello") then kind = "hello"
    else kind = "custom" end
  end
  if cfg.Console then
    return { lines = cfg.Console, exits = cfg.Exits == true, why = "scenario console" }
  end
  local base = prog:match("([^/]+)$")
  if base == "echo" then
    -- prints its arguments and exits: the line reaches the console, then init reboots the enclave
    local args = { table.unpack(cmd, 2) }
    if args[1] == "-n" or args[1] == "-e" then table.remove(args, 1) end
    return { lines = { table.concat(args, " ") }, exits = true, why = "echo exits at once" }
  end
  if cfg.Exits == true or kind == "exits" then
    return { exits = true, why = string.format("%s exits at once", prog) }
  end
  local function mode_from(args, default)
    for i = 1, #args do if args[i] == "--mode" and args[i + 1] then return args[i + 1] end end
    return env.VSOCK_PINGPONG_MODE or default
  end
  local function pingpong(mode)
    local l = { "[enclave] mode=" .. mode }
    if mode == "basic" then l[#l + 1] = "[enclave] basic mode: alive; sleeping forever"
    elseif mode == "vsock" then l[#l + 1] = "[enclave] vsock mode: listening on vsock:any:5000"
    elseif mode == "kms" then
      -- enclave/pingpong_kms.c's own lines: the NSM document (its size varies with the certificate chain), then
      -- the connect error as core/vsock.c words it; a vsock connect to a parent port nobody listens on is answered
      -- with a reset (ECONNRESET), as the virtio transport does
      l[#l + 1] = "[enclave] attestation document from /dev/nsm (4465 bytes)"
      l[#l + 1] = "[enclave] ERROR: upstream_unavailable: connect vsock:3:8082: nothing listens at CID 3 port 8082 " ..
        "(ECONNRESET): the enclave is not running, its server has not started yet, or it listens on another port " ..
        "(check the CID with `nitro-cli describe-enclaves`)"
      return l, 1
    else
      l[#l + 1] = '[enclave] error: unknown mode "' .. mode .. '" (expected basic, vsock or kms)'
      return l, 2
    end
    return l, nil
  end
  if kind == "init" then
    local args = { table.unpack(cmd, 2) }
    local mode = mode_from(args, "vsock")
    local l = { "[init] starting", "[init] launching /vsock-pingpong --mode " .. mode }
    local al, rc = pingpong(mode)
    for _, x in ipairs(al) do l[#l + 1] = x end
    if rc then l[#l + 1] = string.format("[init] /vsock-pingpong exited rc=%d", rc) end
    return { lines = l, listen = (mode == "vsock" and not rc) and { { port = 5000, proto = "pingpong" } } or nil }
  elseif kind == "vsock-pingpong" then
    local mode = mode_from({ table.unpack(cmd, 2) }, "vsock")
    local al, rc = pingpong(mode)
    return { lines = al, exits = rc ~= nil, why = rc and "vsock-pingpong exited" or nil,
      listen = (mode == "vsock" and not rc) and { { port = 5000, proto = "pingpong" } } or nil }
  elseif kind == "busybox-smoke" then
    return { lines = { "[busybox-smoke] alive" } }
  elseif kind == "hello" then
    -- the AWS hello sample: print(f"[{count:4d}] Hello from the enclave side!") every 5 s
    return { every = { period = 5, text = "[%4d] Hello from the enclave side!" } }
  end
  return { lines = {} }
end

local Standin = { name = "standin" }
Standin.__index = Standin

function Standin:boot(b)
  local plan = { lines = kernel_lines(b) }
  local img = b.image or {}
  if img.InitramfsMiB and b.memory_mib and b.memory_mib < img.InitramfsMiB + 64 then
    -- the customer ramdisk does not fit when unpacked: /env and /cmd are missing, init crashes, the kernel panics
    -- and (panic=30) restarts the enclave 30 s later
    local t = 0.9
    for _, text in ipairs({ stamp(0.874651) .. "Initramfs unpacking failed: write error",
      "Could not open /env file: No such file or directory",
      stamp(0.912388) .. "init[1]: segfault at 0 ip 00000000004016f2 sp 00007ffc2d8a1e40 error 4 in init[401000+8e000]",
      stamp(0.913002) .. "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
      stamp(0.913650) .. "Rebooting in 30 seconds.." }) do
      t = t + 0.001
      plan.lines[#plan.lines + 1] = { t = t, text = text }
    end
    plan.stops_after = t + 30
    plan.why = "the initramfs did not fit in the enclave's memory"
    return plan
  end
  local a = app(b.image or {})
  local t = 0.08
  for _, text in ipairs(a.lines or {}) do
    t = t + 0.01
    plan.lines[#plan.lines + 1] = { t = t, text = text }
  end
  if a.exits then
    -- init reaps the command and reboots at once: only what the command printed before exiting (nothing when it
    -- could not even start, e.g. /bin/sh in an image without a shell) comes before the reboot
    t = t + 0.005
    plan.lines[#plan.lines + 1] = { t = t, text = stamp(0.724541) .. "reboot: Restarting system" }
    plan.lines[#plan.lines + 1] = { t = t + 0.001, text = stamp(0.725633) .. "reboot: machine restart" }
    plan.stops_after = t + 0.01
  end
  plan.every = not a.exits and a.every or nil
  plan.listen = not a.exits and a.listen or nil
  plan.why = a.why
  return plan
end

local BACKENDS = { standin = setmetatable({}, Standin) }
Standin.name = "standin"

-- get(name) -> backend | nil, err [, note].  register(name, backend) adds one. "qemu" (nd.sim.backend_qemu) boots
-- the EIF for real; when its pieces are missing get returns the stand-in and a one-line note saying what is missing.
function M.get(name)
  if name == "qemu" and not BACKENDS.qemu then
    local q = require "nd.sim.backend_qemu"
    local ok, why = q.available()
    if not ok then
      return BACKENDS.standin, nil, "qemu backend unavailable (" .. tostring(why) .. "): using the scripted stand-in"
    end
    return q.backend
  end
  local b = BACKENDS[name or "standin"]
  if not b then return nil, "unknown simulator backend: " .. tostring(name) end
  return b
end

-- eif_parts(name, cfg) -> { kernel, ramdisks } for the EIFs the simulator writes when backend `name` boots them for
-- real (qemu: a real kernel, the bootstrap and customer ramdisks), or nil (the stand-in's placeholder blobs do).
function M.eif_parts(name, cfg)
  if name ~= "qemu" then return nil end
  local q = require "nd.sim.backend_qemu"
  if not q.available() then return nil end
  return q.eif_parts(M.command(cfg or {}), (cfg or {}).Env)
end

function M.register(name, b)
  BACKENDS[name] = b
end

M.CMDLINE = CMDLINE

return M

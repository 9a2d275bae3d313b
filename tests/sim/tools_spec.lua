-- The other host commands on the simulated host: systemctl for the allocator (the workshop's stop/sed/start/enable
-- sequence), docker build/inspect/images with the real CMD/ENTRYPOINT rules, journalctl and dmesg.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"
local cjson = require "cjson"

after_each(H.close_all)

describe("systemctl + allocator.yaml", function()
  it("runs the workshop's sequence unchanged (stop, sed memory_mib, start && enable)", function()
    local s = H.activate("healthy")
    local script = [[
set -e
sudo() { "$@"; }
ALLOCATOR_YAML=]] .. s:path("/etc/nitro_enclaves/allocator.yaml") .. [[

MEM_KEY=memory_mib
DEFAULT_MEM=512
sudo systemctl stop nitro-enclaves-allocator.service
sudo sed -r "s/^(\s*${MEM_KEY}\s*:\s*).*/\1${DEFAULT_MEM}/" -i "${ALLOCATOR_YAML}"
sudo systemctl start nitro-enclaves-allocator.service && sudo systemctl enable nitro-enclaves-allocator.service
]]
    local r = H.run({ "sh", "-c", script })
    eq(r.exit_code, 0, r.stderr)
    eq(s:state().allocator.memory_mib, 512)
    eq(fs.read(s:path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")), "256\n")
    r = H.run({ "journalctl", "-u", "nitro-enclaves-allocator.service", "-n", "2", "-o", "cat" })
    eq(r.stdout, "Successfully allocated Nitro Enclaves resources: 512 MiB, 2 CPUs\nFinished Nitro Enclaves Resource Allocator.\n")
    r = H.run({ "systemctl", "status", "nitro-enclaves-allocator.service" })
    eq(r.exit_code, 0)
    match(r.stdout, "^● nitro%-enclaves%-allocator%.service %- Nitro Enclaves Resource Allocator\n")
    match(r.stdout, "\n     Active: active %(exited%) since ")
    eq(H.run({ "systemctl", "is-active", "nitro-enclaves-allocator" }).stdout, "active\n")
    eq(H.run({ "systemctl", "is-enabled", "nitro-enclaves-allocator.service" }).stdout, "enabled\n")
  end)
  it("honours the allocator's errors: unknown keys with the line, cpu_count and cpu_pool together, CPU 0", function()
    local s = H.activate("healthy")
    local yaml = s:path("/etc/nitro_enclaves/allocator.yaml")
    local cases = {
      { "---\nmemory_mib: 512\ncpu_count: 2\nmemroy: 3\n", "memroy" },
      { "---\nmemory_mib: 512\ncpu_count: 2\ncpu_pool: 1,3\n", "" },
      { "---\nmemory_mib: 512\ncpu_pool: 0,2\n", "" },
      { "---\nmemory_mib: 512\ncpu_count: 3\n", "" },
    }
    for _, c in ipairs(cases) do
      eq(H.run({ "systemctl", "stop", "nitro-enclaves-allocator.service" }).exit_code, 0)
      fs.write(yaml, c[1])
      local r = H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" })
      eq(r.exit_code, 1, c[1])
      match(r.stderr, "^Job for nitro%-enclaves%-allocator%.service failed")
      eq(H.run({ "systemctl", "is-active", "nitro-enclaves-allocator.service" }).stdout, "failed\n")
      local j = H.run({ "journalctl", "-u", "nitro-enclaves-allocator.service", "-o", "cat" }).stdout
      match(j, "Error", c[1])
      if c[2] ~= "" then match(j, "unexpected: " .. c[2]) end
      local st = H.run({ "systemctl", "status", "nitro-enclaves-allocator.service" })
      eq(st.exit_code, 3)
      match(st.stdout, "Active: failed")
    end
    -- the driver's own words for the pool it refused
    local dm = H.run({ "dmesg" }).stdout
    match(dm, "%] nitro_enclaves: CPU 0 has to remain available\n[^\n]*%] nitro_enclaves: Error in setup CPU pool %[rc=%-22%]\n")
    -- an inline comment is part of the value for the script's parser (everything after the last ':'): it fails
    -- with the script's words (bootstrap/nitro-enclaves-allocator:354 "The needed memory amount (…) is invalid.")
    fs.write(yaml, "junk: here\n---\n# comment\nmemory_mib: 1024 # trailing\ncpu_pool: 1,3\n")
    eq(H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" }).exit_code, 1)
    match(H.run({ "journalctl", "-u", "nitro-enclaves-allocator.service", "-o", "cat", "-n", "5" }).stdout,
      "Error: The needed memory amount %(1024 # trailing%) is invalid%.\n")
    -- lines before --- are ignored, comment lines skipped
    fs.write(yaml, "junk: here\n---\n# comment\nmemory_mib: 1024\ncpu_pool: 1,3\n")
    eq(H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" }).exit_code, 0)
    eq(s:state().allocator.cpus, { 1, 3 })
    eq(s:state().allocator.memory_mib, 1024)
  end)
  it("unknown units are reported like systemd does", function()
    H.activate("healthy")
    local r = H.run({ "systemctl", "status", "nope.service" })
    eq(r.exit_code, 4)
    eq(r.stderr, "Unit nope.service could not be found.\n")
    eq(H.run({ "systemctl", "is-active", "nitro-enclaves-vsock-proxy.service" }).stdout, "active\n")
  end)
end)

describe("docker", function()
  it("builds the vsock-pingpong image with --build-arg MODE and the EIF runs init with that mode", function()
    local s = H.activate("healthy")
    local dir = spec.tmpdir()
    fs.write(dir .. "/Dockerfile", [[
FROM scratch
ARG MODE=basic
ENV VSOCK_PINGPONG_MODE=${MODE}
COPY vsock-pingpong /vsock-pingpong
COPY init /init
ENTRYPOINT ["/init"]
]])
    local r = H.run({ "docker", "build", "--build-arg", "MODE=vsock", "-t", "pingpong:vsock", dir })
    eq(r.exit_code, 0, r.stderr)
    match(r.stdout, "Successfully tagged pingpong:vsock\n$")
    eq(H.run({ "docker", "inspect", "--format", "{{json .Config.Entrypoint}}", "pingpong:vsock" }).stdout, '["/init"]\n')
    eq(H.run({ "docker", "inspect", "--format", "{{json .Config.Cmd}}", "pingpong:vsock" }).stdout, "null\n")
    local full = cjson.decode(H.run({ "docker", "inspect", "pingpong:vsock" }).stdout)
    eq(full[1].Config.Env, { "VSOCK_PINGPONG_MODE=vsock" })
    match(H.run({ "docker", "images" }).stdout, "\npingpong%s+vsock%s+%x+")
    local home = spec.tmpdir()
    local env = { PATH = os.getenv("PATH"), NITRODIAG_SIM_ROOT = s.root, HOME = home }
    r = H.run({ "nitro-cli", "build-enclave", "--docker-uri", "pingpong:vsock", "--output-file", dir .. "/pp.eif", env = env })
    eq(r.exit_code, 0, r.stderr)
    r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode", "--eif-path", dir .. "/pp.eif" })
    eq(r.exit_code, 0, r.stderr)
    local id = cjson.decode(r.stdout).EnclaveID
    r = H.run({ "nitro-cli", "console", "--enclave-id", id, "--disconnect-timeout", "1" })
    match(r.stdout, "%[init%] launching /vsock%-pingpong %-%-mode vsock\n")
  end)
  it("a shell-form CMD in a scratch image makes the enclave reboot (CMD replaces ENTRYPOINT)", function()
    local s = H.activate("healthy")
    local dir = spec.tmpdir()
    fs.write(dir .. "/Dockerfile", "FROM scratch\nENV VSOCK_PINGPONG_MODE=vsock\nENTRYPOINT [\"/init\"]\nCMD /vsock-pingpong --mode vsock\n")
    eq(H.run({ "docker", "build", "-t", "broken", dir }).exit_code, 0)
    eq(H.run({ "docker", "inspect", "--format", "{{json .Config.Cmd}}", "broken" }).stdout,
      '["/bin/sh","-c","/vsock-pingpong --mode vsock"]\n')
    local env = { PATH = os.getenv("PATH"), NITRODIAG_SIM_ROOT = s.root, HOME = spec.tmpdir() }
    eq(H.run({ "nitro-cli", "build-enclave", "--docker-uri", "broken", "--output-file", dir .. "/b.eif", env = env }).exit_code, 0)
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode", "--attach-console",
      "--eif-path", dir .. "/b.eif" })
    eq(r.exit_code, 45, r.stderr)
    match(r.stdout, "reboot: machine restart\n$")
    falsy(r.stdout:find("[init]", 1, true))
  end)
  it("build-enclave of an image docker does not have is E50", function()
    H.activate("healthy")
    local r = H.run({ "nitro-cli", "build-enclave", "--docker-uri", "nope:1", "--output-file", spec.tmpdir() .. "/n.eif",
      env = { PATH = os.getenv("PATH"), NITRODIAG_SIM_ROOT = os.getenv("NITRODIAG_SIM_ROOT"), HOME = spec.tmpdir() } })
    eq(r.exit_code, 50)
    match(r.stderr, "%[ E50 %] Docker image pull error%.")
    eq(H.run({ "docker", "inspect", "nope:1" }).exit_code, 1)
  end)
end)

describe("describe-eif and bad input", function()
  it("describe-eif prints nd.eif's describe text; a missing or corrupt EIF is E35", function()
    local s = H.activate("healthy")
    local p = s:path("/home/ec2-user/hello-vsock.eif")
    local r = H.run({ "nitro-cli", "describe-eif", "--eif-path", p })
    eq(r.exit_code, 0)
    eq(r.stdout, assert(require("nd.eif").describe(p)) .. "\n")
    local bad = spec.tmpdir() .. "/bad.eif"
    fs.write(bad, "not an eif")
    r = H.run({ "nitro-cli", "describe-eif", "--eif-path", bad })
    eq(r.exit_code, 35)
    r = H.run({ "nitro-cli", "describe-eif", "--eif-path", "/nonexistent.eif" })
    eq(r.exit_code, 35)
  end)
  it("unknown subcommands and options give a usage error, never a crash", function()
    H.activate("healthy")
    for _, argv in ipairs({ { "nitro-cli", "frobnicate" }, { "nitro-cli", "run-enclave", "--bogus" },
      { "nitro-cli", "run-enclave", "--memory" }, { "nitro-cli", "terminate-enclave" }, { "nitro-cli" },
      { "docker", "frob" }, { "systemctl" }, { "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "512" } }) do
      local r = H.run(argv)
      truthy(r.exit_code ~= 0 and r.exit_code < 70, table.concat(argv, " ") .. ": " .. r.exit_code .. " " .. r.stderr)
      falsy(r.stderr:find("internal error", 1, true), r.stderr)
    end
  end)
end)

describe("the simulated host's own files", function()
  it("/proc/meminfo and free_hugepages follow the allocator and the running enclaves", function()
    local s = H.activate("healthy")
    -- 4096 MiB: the allocator takes 1 GiB pages first (set_required_hugepages), four of them
    local G = "/sys/kernel/mm/hugepages/hugepages-1048576kB/"
    eq(fs.read(s:path(G .. "nr_hugepages")), "4\n")
    local mi = assert(fs.read(s:path("/proc/meminfo")))
    match(mi, "\nHugePages_Total:       0\nHugePages_Free:        0\n")
    match(mi, "\nHugepagesize:       2048 kB\n")
    H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--eif-path", s:path("/home/ec2-user/hello-basic.eif") })
    eq(fs.read(s:path(G .. "free_hugepages")), "3\n")
    H.run({ "nitro-cli", "terminate-enclave", "--all" })
    eq(fs.read(s:path(G .. "free_hugepages")), "4\n")
    -- 2 MiB pages when 1 GiB ones do not fit the request
    eq(H.run({ "systemctl", "stop", "nitro-enclaves-allocator.service" }).exit_code, 0)
    fs.write(s:path("/etc/nitro_enclaves/allocator.yaml"), "---\nmemory_mib: 1000\ncpu_count: 2\n")
    eq(H.run({ "systemctl", "start", "nitro-enclaves-allocator.service" }).exit_code, 0)
    match(fs.read(s:path("/proc/meminfo")), "\nHugePages_Total:     500\nHugePages_Free:      500\n")
    H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", s:path("/home/ec2-user/hello-basic.eif") })
    match(fs.read(s:path("/proc/meminfo")), "\nHugePages_Free:      244\n")
    eq(fs.read(s:path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")), "244\n")
  end)
  it("a corrupt state file gives one clear line, not a traceback", function()
    local s = H.activate("healthy")
    fs.write(s:path("/var/lib/nitrodiag-sim/state.json"), "{ not json")
    local r = H.run({ "nitro-cli", "describe-enclaves" })
    eq(r.exit_code, 1)
    match(r.stderr, "^nitro%-cli %(nitrodiag simulator%): [^\n]*simulated host state[^\n]*\n$")
    r = H.run({ "systemctl", "status", "nitro-enclaves-allocator" })
    eq(r.exit_code, 1)
    match(r.stderr, "^systemctl %(nitrodiag simulator%): simulated host state is corrupt")
  end)
end)

describe("unbootable EIFs", function()
  it("an EIF for the other architecture starts, never boots, and fails with E36 then E39 after the boot timeout", function()
    local dir = spec.tmpdir()
    local text = assert(fs.read(spec.source_dir .. "/sim/scenarios/healthy.lua"))
    fs.write(dir .. "/arm.lua", (text:gsub("threads_per_core = 2,", "threads_per_core = 2, boot_timeout = 1,")))
    local s = H.activate(dir .. "/arm.lua")
    local eif = require "nd.eif"
    assert(eif.write(dir .. "/arm.eif", { kernel = "k", cmdline = "console=ttyS0", ramdisks = { "a", "b" }, arch = "aarch64" }))
    local nd = require "nd"
    local t0 = nd.now()
    local r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", dir .. "/arm.eif" })
    truthy(nd.now() - t0 >= 0.9) -- the boot timeout on the host's clock (advanced, not slept)
    eq(r.exit_code, 39)
    eq(r.stdout, "")
    -- 512 MiB from 1 GiB pages: one page (ResourceAllocator takes whole pages)
    match(r.stderr, "^Start allocating memory%.%.%.\nStarted enclave with enclave%-cid: 16, memory: 1024 MiB, cpu%-ids: %[1, 3%]\n%[ E36 %] Enclave boot failure%.")
    match(r.stderr, "\nFailed connections: 1\n%[ E39 %]")
    eq(cjson.decode(H.run({ "nitro-cli", "describe-enclaves" }).stdout), {})
    -- and a file that is no EIF at all
    fs.write(dir .. "/junk.eif", ("x"):rep(4096))
    r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "512", "--eif-path", dir .. "/junk.eif" })
    eq(r.exit_code, 39)
    match(r.stderr, "%[ E36 %]")
    local found
    for _, f in ipairs(H.err_logs(s)) do
      if (fs.read(s:path("/var/log/nitro_enclaves/" .. f)) or ""):find("VsockTimeoutError", 1, true) then found = true end
    end
    truthy(found)
  end)
end)

describe("state lock", function()
  it("a lock left by a killed stand-in is taken over at once", function()
    local s = H.activate("healthy")
    local lock = s:path("/var/lib/nitrodiag-sim/.lock")
    local uv = require "luv"
    assert(uv.fs_mkdir(lock, 448))
    -- a pid that cannot be alive
    fs.write(lock .. "/pid", "999999999")
    local nd = require "nd"
    local t0 = nd.now()
    local r = H.run({ "nitro-cli", "describe-enclaves" })
    eq(r.exit_code, 0, r.stderr)
    truthy(nd.now() - t0 < 8, "a dead owner is not waited for (10 s)")
    falsy(fs.exists(lock))
  end)
  it("an unknown backend is refused at activation", function()
    local sim, err = H.sim.activate("healthy", { backend = "qemu-not-yet" })
    falsy(sim)
    match(err, "unknown simulator backend: qemu%-not%-yet")
  end)
end)

describe("the shipped test images (enclave/Dockerfile, enclave/Dockerfile.smoke)", function()
  it("build as diag10 builds them and print what they print on real hosts", function()
    local df = spec.source_dir .. "/enclave/Dockerfile"
    if not fs.exists(df) then print("    (enclave/ not in this tree: skipped)") return end
    local s = H.activate("healthy")
    local env = { PATH = os.getenv("PATH"), NITRODIAG_SIM_ROOT = s.root, HOME = spec.tmpdir() }
    local out = spec.tmpdir()
    -- multi-stage: only the last stage (FROM scratch, ENV from ARG MODE, ENTRYPOINT ["/init"]) counts
    local r = H.run({ "docker", "build", "--build-arg", "MODE=basic", "-t", "hello-enclave:basic", "-f", df, spec.source_dir })
    eq(r.exit_code, 0, r.stderr)
    local cfg = cjson.decode(H.run({ "docker", "inspect", "hello-enclave:basic" }).stdout)[1].Config
    eq(cfg.Entrypoint, { "/init" })
    eq(cfg.Env, { "VSOCK_PINGPONG_MODE=basic" })
    eq(H.run({ "nitro-cli", "build-enclave", "--docker-uri", "hello-enclave:basic", "--output-file", out .. "/basic.eif", env = env }).exit_code, 0)
    r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode", "--eif-path", out .. "/basic.eif" })
    eq(r.exit_code, 0, r.stderr)
    r = H.run({ "nitro-cli", "console", "--enclave-id", cjson.decode(r.stdout).EnclaveID, "--disconnect-timeout", "1" })
    match(r.stdout, "%[init%] starting\n%[init%] launching /vsock%-pingpong %-%-mode basic\n%[enclave%] mode=basic\n")
    H.run({ "nitro-cli", "terminate-enclave", "--all" })
    -- the busybox smoke image: echo prints its line, exits, and the enclave reboots right after it
    r = H.run({ "docker", "build", "-t", "busybox-smoke", "-f", spec.source_dir .. "/enclave/Dockerfile.smoke", spec.source_dir })
    eq(r.exit_code, 0, r.stderr)
    eq(H.run({ "nitro-cli", "build-enclave", "--docker-uri", "busybox-smoke", "--output-file", out .. "/smoke.eif", env = env }).exit_code, 0)
    r = H.run({ "nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "1024", "--debug-mode", "--attach-console",
      "--eif-path", out .. "/smoke.eif" })
    eq(r.exit_code, 45)
    match(r.stdout, "\n%[busybox%-smoke%] alive\n%[[%s%d.]+%] reboot: Restarting system\n")
    eq(cjson.decode(H.run({ "nitro-cli", "describe-enclaves" }).stdout), {})
  end)
end)

-- ssm-pack through the real CLI, and its commands round-tripped through bash and sh: the reassembled files are
-- byte-identical, the run gets the target's arguments, the bundle path and exit status come out; a dropped chunk
-- is caught; the real nitrodiag runs a packed kms-logs on this machine.
local fs = require "nd.fs"
local json = require "nd.json"

local MIXED = spec.source_dir .. "/tests/data/kmslogs/mixed.log"

local function nitrodiag(args)
  local argv = { spec.nitrodiag }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  argv.timeout = 60
  return assert(spec.run(argv))
end

-- Runs the packed commands the way AWS-RunShellScript does: one script, each command a line.
local function run_commands(shell, cmds, bindir)
  local script = table.concat(cmds, "\n") .. "\n"
  return assert(spec.run{ shell, "-c", script, timeout = 60,
    env = { PATH = bindir .. ":" .. os.getenv("PATH"), HOME = os.getenv("HOME") or "/root" } })
end

local function pack(dir, extra)
  local out = dir .. "/params.json"
  local args = { "ssm-pack", "kms-logs", "out=" .. out, "dir=" .. dir }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local r = nitrodiag(args)
  eq(r.exit_code, 0, r.stdout .. r.stderr)
  local doc = assert(json.decode(assert(fs.read(out))))
  return doc, r
end

local function fake_nitrodiag(dir)
  local bin = dir .. "/bin"
  assert(fs.mkdir_p(bin))
  -- Records its arguments, keeps a copy of every file in its working directory, claims a bundle.
  assert(fs.write(bin .. "/nitrodiag", table.concat({
    "#!/bin/sh",
    'printf "%s\\n" "$@" > ' .. dir .. "/argv",
    "mkdir -p " .. dir .. "/got && cp ./* " .. dir .. "/got/",
    'echo "verdict: WARN (2 steps, 0.1 s)"',
    'echo "bundle: /var/tmp/nitrodiag-kms-logs-20260127T100000Z.tar.gz"',
    "exit 0", "" }, "\n"), tonumber("755", 8)))
  return bin
end

describe("nitrodiag ssm-pack", function()
  it("packs into short lines that bash reassembles byte for byte and runs with the arguments", function()
    local dir = spec.tmpdir()
    local blob = {}
    for i = 0, 255 do blob[#blob + 1] = string.char(i) end
    blob = table.concat(blob):rep(7) .. "'\"$(x)`\\"
    assert(fs.write(dir .. "/blob.bin", blob))
    local doc = pack(dir, { "args=mode=ids errors=true source=/var/log/x.log", "files=" .. dir .. "/blob.bin",
                            "chunk=101", "options=--deadline 30" })
    local longest, chunks = 0, 0
    for _, c in ipairs(doc.commands) do
      local data = c:match("^printf '%%s' '([^']*)' >>? ")
      if data then
        chunks = chunks + 1
        truthy(#data <= 100, "chunk of " .. #data .. " (100 = 101 rounded down to a multiple of 4)")
        longest = math.max(longest, #c)
      end
    end
    truthy(longest <= 100 + 50, "longest chunk line " .. longest)
    truthy(chunks > 40, "chunks: " .. chunks)
    eq(doc.executionTimeout, { "660" }) -- kms-logs' deadline + 60 s

    for _, shell in ipairs({ "bash", "sh" }) do
      local bin = fake_nitrodiag(dir)
      local r = run_commands(shell, doc.commands, bin)
      eq(r.exit_code, 0, shell .. ": " .. r.stdout .. r.stderr)
      match(r.stdout, "NITRODIAG_BUNDLE=/var/tmp/nitrodiag%-kms%-logs%-20260127T100000Z%.tar%.gz\n")
      match(r.stdout, "NITRODIAG_EXIT=0\n")
      match(r.stdout, "verdict: WARN")
      eq(fs.read(dir .. "/got/kms-logs.lua"), fs.read(spec.source_dir .. "/scripts/kms-logs.lua"))
      eq(fs.read(dir .. "/got/blob.bin"), blob)
      eq(fs.read(dir .. "/got/nitrodiag.out") ~= nil, true)
      local argv = assert(fs.read(dir .. "/argv"))
      match(argv, "^%-%-deadline\n30\n%-%-out\n" .. dir:gsub("%p", "%%%0") .. "/nitrodiag%-ssm%.[%w]+\nrun\n")
      match(argv, "kms%-logs%.lua\nmode=ids\nerrors=true\nsource=/var/log/x%.log\n$")
      local leftovers = {}
      for _, f in ipairs(fs.list(dir .. "/got")) do if f:match("%.b64$") then leftovers[#leftovers + 1] = f end end
      eq(leftovers, {}, "no base64 left behind")
      assert(fs.rm_rf(dir .. "/got"))
    end
  end)

  it("stops with a clear message when a chunk is lost in transit", function()
    local dir = spec.tmpdir()
    local doc = pack(dir, { "chunk=200" })
    local cmds = {}
    local dropped = false
    for _, c in ipairs(doc.commands) do
      if not dropped and c:match("^printf '%%s' '.*' >> ") then dropped = true else cmds[#cmds + 1] = c end
    end
    truthy(dropped)
    local r = run_commands("bash", cmds, fake_nitrodiag(dir))
    eq(r.exit_code, 1)
    match(r.stderr, "nitrodiag%-ssm: kms%-logs%.lua ")
    falsy(fs.exists(dir .. "/argv"), "nitrodiag must not run")
  end)

  it("cut short after any line, the script runs nothing, says so, fails and leaves no file (bash and sh)", function()
    local dir = spec.tmpdir()
    local doc = pack(dir, { "chunk=2000" })
    local n = #doc.commands
    truthy(n > 20, "commands: " .. n)
    for _, shell in ipairs({ "bash", "sh" }) do
      for keep = 1, n - 1 do
        local work = spec.tmpdir()
        local bin = fake_nitrodiag(work)
        local cmds = {}
        for i = 1, keep do cmds[i] = doc.commands[i]:gsub("mktemp %-d '[^']*/nitrodiag%-ssm", "mktemp -d '" .. work .. "/nitrodiag-ssm") end
        local r = run_commands(shell, cmds, bin)
        local what = string.format("%s, cut after line %d of %d", shell, keep, n)
        truthy(r.exit_code ~= 0, what .. ": exit " .. r.exit_code)
        truthy(r.stderr:match("%S"), what .. ": nothing on stderr")
        falsy(fs.exists(work .. "/argv"), what .. ": nitrodiag ran")
        local left = {}
        for _, f in ipairs(fs.list(work) or {}) do if f:match("^nitrodiag%-ssm") then left[#left + 1] = f end end
        eq(left, {}, what .. ": temporary files left")
      end
    end
    -- the whole script still runs, and a failure inside it (a lost chunk) also leaves nothing behind
    local work = spec.tmpdir()
    local cmds = {}
    for i, c in ipairs(doc.commands) do cmds[i] = c:gsub("mktemp %-d '[^']*/nitrodiag%-ssm", "mktemp -d '" .. work .. "/nitrodiag-ssm") end
    local ok = run_commands("sh", cmds, fake_nitrodiag(work))
    eq(ok.exit_code, 0, ok.stderr)
    local bad = {}
    local dropped = false
    for _, c in ipairs(cmds) do
      if not dropped and c:match("^printf '%%s' '.*' >> ") then dropped = true else bad[#bad + 1] = c end
    end
    local work2 = spec.tmpdir()
    for i, c in ipairs(bad) do bad[i] = c:gsub("mktemp %-d '[^']*/nitrodiag%-ssm", "mktemp -d '" .. work2 .. "/nitrodiag-ssm") end
    local r = run_commands("sh", bad, fake_nitrodiag(work2))
    eq(r.exit_code, 1, r.stderr)
    local left = {}
    for _, f in ipairs(fs.list(work2) or {}) do if f:match("^nitrodiag%-ssm") then left[#left + 1] = f end end
    eq(left, {}, "a failed reassembly leaves no working directory")
  end)

  it("runs a packed kms-logs with the real nitrodiag and reports its exit status", function()
    local dir = spec.tmpdir()
    local bin = dir .. "/bin"
    assert(fs.mkdir_p(bin))
    assert(spec.run{ "ln", "-s", spec.nitrodiag, bin .. "/nitrodiag" })
    local doc = pack(dir, { "args=" .. MIXED .. " mode=summary" })
    local r = run_commands("bash", doc.commands, bin)
    eq(r.exit_code, 1, r.stdout .. r.stderr) -- the log holds an access-denied error
    match(r.stdout, "verdict: FAIL")
    match(r.stdout, "KMS_ACCESS_DENIED")
    match(r.stdout, "NITRODIAG_BUNDLE=none\n")
    match(r.stdout, "NITRODIAG_EXIT=1\n")
  end)

  it("prints a plain script, checks the target's arguments, and refuses oversize documents", function()
    local r = nitrodiag({ "ssm-pack", "kms-logs", "format=plain", "args=mode=ids" })
    eq(r.exit_code, 0)
    match(r.stdout, "#!/bin/sh\n# nitrodiag ssm%-pack: kms%-logs mode=ids\ntrap '")
    match(r.stdout, "\nnd_main%(%) {\nND_STARTED=1\numask 077\n")
    match(r.stdout, "\n}\nnd_main\n$")
    local bad = nitrodiag({ "--json", "ssm-pack", "kms-logs", "args=modee=ids" })
    eq(bad.exit_code, 1)
    match(json.decode(bad.stdout).steps[1].message, 'unknown argument "modee"')
    local none = nitrodiag({ "--json", "ssm-pack", "no-such-runbook" })
    eq(none.exit_code, 1)
    match(json.decode(none.stdout).steps[1].message, "unknown runbook")
    local big = nitrodiag({ "--json", "ssm-pack", "kms-logs", "max_total=2000" })
    eq(big.exit_code, 1)
    eq(json.decode(big.stdout).findings[1].code, "SSM_TOO_BIG")
    local js = nitrodiag({ "--json", "ssm-pack", "kms-logs" })
    local res = json.decode(js.stdout)
    eq(res.output.files[1].name, "kms-logs.lua")
    eq(#res.output.parameters.commands, res.output.commands)
  end)
end)

-- nd.bundle through the real binary: secrets planted everywhere never reach the archive (checked on the bytes gzip
-- itself decompresses), SIGTERM during a collection still yields a valid bundle marked interrupted, a full disk and
-- an unwritable directory give a clear error with no file left, and the API's outcomes (missing, timeout, rules).
local nd = require "nd"
local fs = require "nd.fs"
local json = require "nd.json"
local bundle = require "nd.bundle"
local proc = require "nd.proc"

local RB = spec.source_dir .. "/tests/lua/runbooks/collect.lua"

-- The planted secrets: every kind the scrubber knows, in values that appear nowhere else.
local S = {
  keyid = "AKIAQWERTYUIOPASDF12",
  tkeyid = "ASIAZXCVBNMLKJHGF345",
  tkeyid2 = "ASIAPLANTEDIMDSKEY99",
  secret = "q8Zp/Xv3+Lm9Rt2Wn5Yk7Hb4Jc6Fd1Gs0Ae8Uo7x",
  secret2 = "Imds/Secret+Planted0123456789abcdefGHIJKL",
  token = "FwoGZXIvYXdzEJr//////////wEaDPlanTedSessionTokenValue0123456789+/abcdEFGH==",
  token2 = "IQoJb3JpZ2luX2VjPlantedSecurityToken987654321zyxwvut",
  token3 = "IQoJb3JpZ2luX2VjImdsTokenPlanted000111222333444555666",
  sig = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  sig2 = "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592",
  bearer = "eyJhbGciPlantedBearerTokenXYZ123",
  pem1 = "MIIEpAIBAAKCAQEAplantedPrivateKeyBodyLineOne",
  pem2 = "plantedPrivateKeyBodyLineTwoZZZ==",
  customer = "customer-987654",
}

local function secrets_text()
  return table.concat({
    "export AWS_ACCESS_KEY_ID=" .. S.keyid,
    "aws_secret_access_key = " .. S.secret,
    "AWS_SESSION_TOKEN=" .. S.token,
    "temporary key " .. S.tkeyid .. " in use",
    "Authorization: AWS4-HMAC-SHA256 Credential=" .. S.keyid .. "/20261122/us-east-1/kms/aws4_request, " ..
      "SignedHeaders=host;x-amz-date, Signature=" .. S.sig,
    "authorization: Bearer " .. S.bearer,
    "X-Amz-Security-Token: " .. S.token2,
    "GET https://b.s3.amazonaws.com/k?X-Amz-Signature=" .. S.sig2 .. "&X-Amz-Security-Token=" .. S.token3 .. "&x=1",
    "ticket for " .. S.customer,
    "-----BEGIN RSA PRIVATE KEY-----", S.pem1, S.pem2, "-----END RSA PRIVATE KEY-----",
    "",
  }, "\n")
end

local function imds_json()
  return '{\n  "Code" : "Success",\n  "LastUpdated" : "2026-11-22T19:00:00Z",\n  "Type" : "AWS-HMAC",\n' ..
    '  "AccessKeyId" : "' .. S.tkeyid2 .. '",\n  "SecretAccessKey" : "' .. S.secret2 .. '",\n' ..
    '  "Token" : "' .. S.token3 .. '",\n  "Expiration" : "2026-11-23T01:00:00Z"\n}\n'
end

local function write(path, data)
  local dir = path:match("^(.*)/[^/]*$")
  assert(spec.run{ "mkdir", "-p", dir })
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function make_root(dir)
  local root = dir .. "/root"
  local st = secrets_text()
  write(root .. "/secrets.txt", st)
  write(root .. "/var/log/nitro_enclaves/nitro_enclaves.log", "2026-11-22 boot\n" .. st .. "2026-11-22 done\n")
  write(root .. "/var/log/nitro_enclaves/err2026-11-22T19:00:00.log", "[ E26 ] Insufficient memory\n" .. st)
  write(root .. "/root/.aws/credentials", "[default]\naws_access_key_id = " .. S.keyid .. "\naws_secret_access_key = " ..
    S.secret .. "\naws_session_token = " .. S.token .. "\n")
  write(root .. "/imds.json", imds_json())
  write(root .. "/etc/pki/enclave.pem", "-----BEGIN PRIVATE KEY-----\n" .. S.pem1 .. "\n" .. S.pem2 ..
    "\n-----END PRIVATE KEY-----\n")
  return root
end

-- cwd: the engine passes --out on as opts.out while it reads opts.out_dir (reported to the lead); running in the
-- output directory makes these tests independent of that.
local function nitrodiag(args, env, cwd)
  local argv = { spec.nitrodiag, cwd = cwd }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local e = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/root", NITRODIAG_PATH = "" }
  for k, v in pairs(env or {}) do e[k] = v end
  argv.env = e
  argv.timeout = 60
  argv.cap = 16 * 1024 * 1024
  return assert(spec.run(argv))
end

local function ls(dir)
  local r = assert(spec.run{ "ls", "-A", dir })
  local out = {}
  for l in r.stdout:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- Every 12-byte window of a secret (so a partial leak is caught too).
local function windows(v)
  local w = {}
  for i = 1, #v - 11 do w[#w + 1] = v:sub(i, i + 11) end
  return w
end

describe("secret scrubbing", function()
  it("leaves no byte sequence of any planted secret anywhere in the decompressed archive", function()
    local dir = spec.tmpdir()
    local root = make_root(dir)
    local out = dir .. "/out"
    assert(spec.run{ "mkdir", "-p", out })
    local r = nitrodiag({ "--json", "--root", root, "--out", out, "run", RB }, nil, out)
    local res = assert(json.decode(r.stdout), r.stderr)
    if res.bundle and res.bundle:sub(1, 1) ~= "/" then res.bundle = out .. "/" .. res.bundle end
    truthy(res.bundle, "bundle written: " .. tostring(res.bundle_error))
    eq(ls(out), { res.bundle:match("[^/]+$") }, "one file, no temporary left")

    -- the whole tar stream, headers and manifest included, as gzip itself decompresses it
    local raw = assert(spec.run{ "gzip", "-dc", res.bundle, cap = 64 * 1024 * 1024 })
    eq(raw.exit_code, 0)
    truthy(#raw.stdout > 10000, "decompressed " .. #raw.stdout .. " bytes")
    for name, v in pairs(S) do
      falsy(raw.stdout:find(v, 1, true), name .. " leaked")
      for _, w in ipairs(windows(v)) do
        if raw.stdout:find(w, 1, true) then error(name .. " leaked partly: " .. w) end
      end
    end

    local c = assert(bundle.read(res.bundle))
    eq(#c.problems, 0)
    local m = c.manifest
    for _, rule in ipairs({ "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "x_amz_security_token",
                            "authorization", "sigv4_signature", "private_key", "imds_credentials", "custom" }) do
      truthy((m.redactions[rule] or 0) > 0, "rule " .. rule .. " made no redaction")
    end
    -- the evidence and the report still make sense: what is not secret stays
    match(c.report, "credentials found in the environment")
    match(c.report, "aws_secret_access_key = %[REDACTED%]")
    local names = {}
    for _, a in ipairs(m.artifacts) do names[a.name] = a end
    eq(names["gone.log"].status, "missing")
    truthy(names["err2026-11-22T19:00:00.log"], "glob member present")
    truthy(names["steps/01-collect.log"], "step log present")
    truthy((names["env.txt.stderr"] or names["stderr.txt.stderr"]), "stderr captured")
  end)
end)

describe("interruption", function()
  it("SIGTERM in the middle of a collection gives a valid bundle marked interrupted", function()
    local dir = spec.tmpdir()
    local root = make_root(dir)
    -- an 8 MiB log, collected again and again by the slow step
    local f = assert(io.open(root .. "/var/log/big.log", "wb"))
    local line = string.rep("x", 99) .. "\n"
    f:write(string.rep(line, 80 * 1024))
    f:close()
    local out, mark = dir .. "/out", dir .. "/mark"
    assert(spec.run{ "mkdir", "-p", out })
    local h = proc.start{ cwd = out, spec.nitrodiag, "--json", "--root", root, "--out", out, "run", RB, "slow=true",
                          env = { PATH = os.getenv("PATH"), HOME = "/root", NITRODIAG_PATH = "", ND_TEST_MARK = mark },
                          cap = 16 * 1024 * 1024 }
    local t0 = nd.now()
    while not fs.exists(mark) and nd.now() - t0 < 60 do nd.sleep(0.05) end
    truthy(fs.exists(mark), "the slow phase started")
    nd.sleep(0.3)
    local t1 = nd.now() -- promptly: from the signal, not from the start (a loaded machine starts slowly)
    h:signal("TERM")
    local r = assert(h:wait())
    truthy(nd.now() - t1 < 30, "it stopped promptly")
    local res = assert(json.decode(r.stdout), r.stderr)
    eq(res.interrupted, true)
    if res.bundle and res.bundle:sub(1, 1) ~= "/" then res.bundle = out .. "/" .. res.bundle end
    truthy(res.bundle, "bundle: " .. tostring(res.bundle_error))
    eq(#ls(out), 1, "no temporary file left")

    local c = assert(bundle.read(res.bundle))
    eq(#c.problems, 0, "every member matches the manifest")
    eq(c.manifest.interrupted, true)
    match(c.manifest.interrupt_reason, "SIGTERM")
    match(c.report, "Interrupted")
    local big = 0
    for _, a in ipairs(c.manifest.artifacts) do
      if a.name:match("^big%-") and a.status == "ok" then big = big + 1 end
    end
    truthy(big >= 2, "what was collected before the signal is there (" .. big .. " big logs)")
    -- and the CLI agrees
    local v = nitrodiag({ "bundle", res.bundle })
    eq(v.exit_code, 0, v.stdout .. v.stderr)
    match(v.stdout, "verified: all %d+ members match")
  end, 90)
end)

describe("nd.bundle API", function()
  -- add_command runs through nd.proc (lua/nd/bundle.lua): the interruption semantics of the one runner
  local function alive(pid)
    local r = spec.run{ "kill", "-0", tostring(pid) }
    return r and r.exit_code == 0
  end
  -- the shell creates the file (the redirection) before echo writes into it: wait for a whole line, not the file
  local function read_pid(path)
    local t0 = nd.now()
    repeat
      local f = io.open(path)
      if f then
        local line = f:read("L")
        f:close()
        local pid = line and line:match("^(%d+)\n$")
        if pid then return tonumber(pid) end
      end
      nd.sleep(0.02)
    until nd.now() - t0 > 60
    error("no pid in " .. path .. " after 60 s")
  end
  local function gone(pid)
    local t0 = nd.now()
    while alive(pid) and nd.now() - t0 < 30 do nd.sleep(0.05) end
    return not alive(pid)
  end
  local function entry(entries, name)
    for _, e in ipairs(entries) do if e.name == name then return e end end
  end

  it("records missing files, timeouts and command-not-found without failing, and honours caps", function()
    local dir = spec.tmpdir()
    local b <close> = assert(bundle.open{ out_dir = dir, runbook = "api", host = "h1" })
    local e = b:add_file(nil, "/definitely/not/here.log")
    eq(e.status, "missing")
    match(e.error, "no such file")
    -- the timeout leaves a slow-starting shell (a loaded machine) ample time to print before it is killed
    e = b:add_command("slow.txt", { "sh", "-c", "echo partial; exec sleep 60" }, { timeout = 3 })
    eq(e.status, "timeout")
    eq(e.bytes, 8)
    e = b:add_command("nf.txt", { "nitrodiag-no-such-tool" })
    eq(e.status, "missing")
    match(e.error, "command not found")
    e = b:add_command("seq.txt", { "seq", "1", "100000" }, { cap = 1000 })
    eq(e.truncated, true)
    eq(e.bytes, 1000)
    e = b:add_command("lines.txt", { "seq", "1", "100" }, { lines = 3 })
    eq(e.bytes, #"98\n99\n100\n")
    eq(e.truncated_reason, "tail_lines=3")
    -- denied, even for root: a write-only sysfs attribute refuses O_RDONLY with EACCES
    local wo = spec.run{ "sh", "-c", "ls /sys/bus/*/drivers_probe 2>/dev/null | head -n 1" }
    local wpath = wo and wo.stdout:match("[^\n]+")
    if wpath then
      e = b:add_file("wo", wpath)
      eq(e.status, "denied")
      match(e.error, "permission denied")
    end
    local list = b:add_glob("/definitely/not/*.log")
    eq(#list, 1)
    eq(list[1].status, "missing")
    raises(function() b:add_string("../escape", "x") end, "bad member name")
    raises(function() b:add_rule("[unclosed", "x") end, "malformed pattern")
    truthy(b:add_rule("re:tok_[a-z]+", "tok_X", { name = "mytok" }))
    eq(b:add_string("t.txt", "a tok_abc b\n").redactions.mytok, 1)
    -- Lua patterns: classes, sets with classes and escapes, anchors, captures in the replacement
    truthy(b:add_rule("^pin=[%w%-]+", "pin=<hidden>", { name = "pin" }))
    truthy(b:add_rule("(user)%s*:%s*(%a+)", "%1: <%2?>", { name = "user" }))
    truthy(b:add_rule("price%$%d+%.%d%d", "price$N", { name = "price" }))
    local e2 = b:add_string("p.txt", "pin=ab-12_x\nx pin=zz\nuser :  bob\ncost price$12.50 ok\n")
    eq(e2.redactions, { pin = 1, user = 1, price = 1 })
    -- matched by Lua itself: '-' is lazy (two tags, not one greedy span), %b works, exactly as string.gsub does
    truthy(b:add_rule("<tok.->", "<T>", { name = "lazy" }))
    truthy(b:add_rule("key%b()", "key(...)", { name = "balanced" }))
    local lazy_in = "x <tok1> y <tok2> z key(a(b)c) w\n"
    local want = lazy_in:gsub("<tok.->", "<T>"):gsub("key%b()", "key(...)")
    eq(want, "x <T> y <T> z key(...) w\n", "Lua's own gsub, the reference")
    local e3 = b:add_string("lazy.txt", lazy_in)
    eq(e3.redactions.lazy, 2)
    eq(e3.redactions.balanced, 1)
    raises(function() b:add_rule("x", "%q") end, "invalid use of '%%'")
    local p = assert(b:finish({ runbook = "api", verdict = "pass", steps = {}, findings = {} }))
    eq(b:finish(), p, "finish twice returns the same path")
    local c = assert(bundle.read(p))
    eq(#c.problems, 0)
    local raw = assert(spec.run{ "tar", "-xzOf", p, c.topdir .. "/p.txt" })
    eq(raw.stdout, "pin=<hidden>_x\nx pin=zz\nuser: <bob?>\ncost price$N ok\n")
    eq(assert(spec.run{ "tar", "-xzOf", p, c.topdir .. "/lazy.txt" }).stdout, "x <T> y <T> z key(...) w\n")
    eq(c.manifest.interrupted, false)
    eq(c.summary.verdict, "pass")
  end)

  it("abort writes a valid bundle marked interrupted; closing an unfinished bundle leaves nothing", function()
    local dir = spec.tmpdir()
    do
      local b <close> = assert(bundle.open{ out_dir = dir, runbook = "gone" })
      b:add_string("a.txt", "hello\n")
    end
    collectgarbage()
    eq(ls(dir), {}, "discarded: no temporary, no final file")
    local b = assert(bundle.open{ out_dir = dir, runbook = "ab" })
    b:add_string("a.txt", "hello\n")
    local p = assert(b:abort("deadline", { runbook = "ab", verdict = "timeout", steps = {}, findings = {} }))
    local c = assert(bundle.read(p))
    eq(c.manifest.interrupted, true)
    eq(c.manifest.interrupt_reason, "deadline")
    eq(#c.problems, 0)
    b:close()
  end)

  it("closing the bundle while a command runs in another task: the task gets an error, nothing is left", function()
    local dir = spec.tmpdir()
    local b = assert(bundle.open{ out_dir = dir .. "/out", runbook = "race" })
    -- the command runs until the bundle is closed: it says it started (its pid), then waits for the go file
    local pidf, go = dir .. "/pid", dir .. "/go"
    local t = nd.spawn(function()
      return b:add_command("wait.txt", { "sh", "-c", "echo $$ > \"$0\"; while [ ! -e \"$1\" ]; do sleep 0.02; done",
                                         pidf, go }, { timeout = 60 })
    end)
    read_pid(pidf)
    b:close()
    write(go, "")
    local ok, r, err = t:join()
    truthy(ok, tostring(r))
    eq(r, nil)
    match(err, "closed")
    eq(ls(dir .. "/out"), {})
    raises(function() b:add_string("x", "y") end, "already finished or aborted")
  end)

  it("a task cancelled while its command runs (SIGINT): recorded as interrupted, process group killed and reaped", function()
    local dir = spec.tmpdir()
    local b <close> = assert(bundle.open{ out_dir = dir .. "/out", runbook = "cancel" })
    b:add_string("before.txt", "collected before the signal\n")
    local pidf, kidf = dir .. "/pid", dir .. "/kid"
    local t = nd.spawn(function()
      return b:add_command("hang.txt", { "sh", "-c",
        "echo partial; echo oops >&2; echo $$ > \"$0\"; sleep 30 & echo $! > \"$1\"; wait", pidf, kidf }, { timeout = 60 })
    end)
    local pid, kid = read_pid(pidf), read_pid(kidf)
    truthy(alive(pid) and alive(kid), "the command and its child run")
    t:cancel("interrupted by SIGINT")
    local ok, err = t:join()
    eq(ok, false)
    match(err, "SIGINT")
    local e = assert(entry(b:entries(), "hang.txt"), "the command is in the manifest")
    eq(e.status, "error")
    eq(e.kind, "command")
    match(e.error, "^interrupted before the command finished")
    match(e.source, "^sh %-c ")
    eq(e.bytes, #"partial\n", "what it printed before the signal is kept")
    eq(e.exit_code, nil, "no exit status: it had none")
    local se = assert(entry(b:entries(), "hang.txt.stderr"), "its stderr too")
    eq(se.bytes, #"oops\n")
    truthy(gone(pid), "the command was killed and reaped (no zombie answers kill -0)")
    truthy(gone(kid), "its process group went with it")
    local p = assert(b:abort("interrupted by SIGINT", { runbook = "cancel", verdict = "error", steps = {}, findings = {} }))
    local c = assert(bundle.read(p))
    eq(#c.problems, 0)
    eq(entry(c.manifest.artifacts, "before.txt").status, "ok", "what was collected before is kept")
    eq(entry(c.manifest.artifacts, "hang.txt").status, "error")
    eq(assert(spec.run{ "tar", "-xzOf", p, c.topdir .. "/hang.txt" }).stdout, "partial\n")
  end)

  it("abort while a command runs in another task: recorded with the reason, cancelled, the task gets ECANCELED", function()
    local dir = spec.tmpdir()
    local b = assert(bundle.open{ out_dir = dir, runbook = "abort" })
    local pidf = dir .. "/pid"
    local t = nd.spawn(function()
      return b:add_command("slow.txt", { "sh", "-c", "echo started; echo $$ > \"$0\"; exec sleep 30", pidf })
    end)
    local pid = read_pid(pidf)
    local p = assert(b:abort("interrupted by SIGTERM", { runbook = "abort", verdict = "error", steps = {}, findings = {} }))
    local ok, r, msg, code = t:join()
    truthy(ok, tostring(r))
    eq(r, nil)
    match(msg, "bundle was closed")
    eq(code, "ECANCELED")
    truthy(gone(pid), "the command was stopped and reaped")
    local c = assert(bundle.read(p))
    eq(#c.problems, 0)
    local e = assert(entry(c.manifest.artifacts, "slow.txt"))
    eq(e.status, "error")
    eq(e.error, "interrupted before the command finished: interrupted by SIGTERM")
    eq(e.bytes, #"started\n", "what it printed before the abort is kept")
    eq(assert(spec.run{ "tar", "-xzOf", p, c.topdir .. "/slow.txt" }).stdout, "started\n")
    eq(c.manifest.interrupted, true)
    b:close()
  end)

  it("add_command raises on bad arguments and records nothing", function()
    local dir = spec.tmpdir()
    local b <close> = assert(bundle.open{ out_dir = dir, runbook = "args" })
    raises(function() b:add_command("x", {}) end, "non%-empty argv")
    raises(function() b:add_command("x", { "echo", {} }) end, "argv%[2%] is not a string")
    raises(function() b:add_command("x", { "echo" }, { timeout = "soon" }) end, "timeout")
    raises(function() b:add_command("../x", { "echo", "hi" }) end, "bad member name")
    eq(#b:entries(), 0)
    b:close()
    raises(function() b:add_command("x", { "echo" }) end, "already finished or aborted")
  end)

  it("an unwritable output directory gives nil and a message naming it", function()
    local dir = spec.tmpdir()
    write(dir .. "/file", "x")
    local b, err, code = bundle.open{ out_dir = dir .. "/file/sub" }
    eq(b, nil)
    match(err, "cannot write the bundle in .*/file/sub")
    eq(code, "ENOTDIR")
    local ro = dir .. "/ro"
    assert(spec.run{ "mkdir", ro })
    local m = spec.run{ "mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", ro }
    if m and m.exit_code == 0 then
      local b2, err2, code2 = bundle.open{ out_dir = ro }
      spec.run{ "umount", ro }
      eq(b2, nil)
      eq(code2, "EROFS")
      match(err2, "Read%-only file system")
    end
  end)

  it("a full disk: the run still prints its result, says why the bundle is missing, leaves no file", function()
    local dir = spec.tmpdir()
    local root = make_root(dir)
    -- 512 KiB of incompressible bytes among the logs
    local rnd = assert(spec.run{ "head", "-c", "524288", "/dev/urandom", cap = 1024 * 1024 })
    write(root .. "/var/log/nitro_enclaves/err-random.log", rnd.stdout)
    local out = dir .. "/full"
    assert(spec.run{ "mkdir", out })
    local m = spec.run{ "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", out }
    if not (m and m.exit_code == 0) then return end -- no mount privilege: covered by the C unit test's skip note
    local r = nitrodiag({ "--json", "--root", root, "--out", out, "run", RB }, nil, out)
    local left = ls(out)
    spec.run{ "umount", out }
    local res = assert(json.decode(r.stdout), r.stderr)
    eq(res.bundle, nil)
    match(res.bundle_error, "No space left on device")
    match(res.bundle_error, "temporary file removed")
    eq(res.steps[1].outcome, "warn")
    eq(left, {}, "nothing left in the full directory")
  end)
end)

describe("nd.proc handle:output", function()
  it("what a running command printed so far, then the result; nothing from a closed handle", function()
    local h = proc.start{ "sh", "-c", "echo a; echo b >&2; exec sleep 30" }
    local out
    local t0 = nd.now()
    repeat
      nd.sleep(0.02)
      out = assert(h:output())
    until (out.stdout == "a\n" and out.stderr == "b\n") or nd.now() - t0 > 10
    eq(out.stdout, "a\n")
    eq(out.stderr, "b\n")
    eq(out.stdout_bytes, 2)
    eq(out.running, true)
    eq(out.status, "running")
    eq(out.pid, h:pid())
    truthy(out.duration > 0)
    h:close()
    local none, msg, code = h:output()
    eq(none, nil)
    match(msg, "closed")
    eq(code, "EBADF")
    local d = proc.start{ "sh", "-c", "echo done" }
    local r = assert(d:wait())
    local o = assert(d:output())
    eq(o.stdout, r.stdout)
    eq(o.running, false)
    eq(o.status, "exit 0")
    d:close()
  end)
end)

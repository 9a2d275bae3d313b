-- A test runbook for the bundle specs: collects a host tree given as root (files, a glob, commands, strings, JSON),
-- with findings whose evidence quotes the planted secrets, and an optional slow phase to be interrupted.
--   ND_TEST_MARK=FILE   written when the slow phase starts (the spec then sends SIGTERM)
return {
  description = "bundle test: collect a fake host with secrets everywhere",
  args = {
    { name = "slow", type = "boolean", default = false, help = "end with a long collection loop" },
  },
  deadline = 120,
  collect = true,
  steps = {
    { name = "collect", timeout = 30,
      run = function(s)
        local b = assert(s.bundle, "no bundle")
        b:add_rule("customer%-(%d+)", "customer-<%1>")
        b:add_file("nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", { tail_lines = 1000 })
        b:add_glob("/var/log/nitro_enclaves/err*.log")
        b:add_file("credentials", "/root/.aws/credentials")
        b:add_file("imds.json", "/imds.json")
        b:add_file("key.pem", "/etc/pki/enclave.pem")
        b:add_file("gone.log", "/var/log/gone.log")
        local secrets = assert(io.open(s.ctx.root .. "/secrets.txt")):read("a")
        b:add_command("env.txt", { "cat", s.ctx.root .. "/secrets.txt" }, { timeout = 5 })
        b:add_command("stderr.txt", { "sh", "-c", "cat \"$0\" >&2", s.ctx.root .. "/secrets.txt" }, { timeout = 5 })
        b:add_command("curl.txt", { "echo", "curl", "-H", (secrets:match("Authorization: [^\n]*")) }, { timeout = 5 })
        b:add_string("notes.txt", secrets)
        b:add_json("imds_copy.json", assert(require("nd.json").decode(assert(io.open(s.ctx.root .. "/imds.json")):read("a"))))
        s:log(secrets)
        s:finding{ code = "T-SECRET", severity = "warn", message = "credentials found in the environment",
                   evidence = { (secrets:match("aws_secret_access_key[^\n]*")), (secrets:match("AKIA%w+")) },
                   remediation = "rotate " .. (secrets:match("ASIA%w+") or "") }
      end },
    { name = "slow", timeout = 60, when = function(a) return a.slow end,
      run = function(s)
        local b = s.bundle
        local mark = os.getenv("ND_TEST_MARK")
        for i = 1, 1000 do
          b:add_file(string.format("big-%03d.log", i), "/var/log/big.log", { tail_bytes = 2 * 1024 * 1024 })
          if i == 2 and mark then
            local f = assert(io.open(mark, "w")) f:write("started\n") f:close()
          end
          b:add_command(string.format("sleep-%03d.txt", i), { "sh", "-c", "echo tick; sleep 0.2" }, { timeout = 10 })
        end
      end },
  },
}

-- scripts/vsock-ping.lua — the host-side client of diag10's vsock test: connect to the vsock-pingpong enclave
-- (CID, port 5000), send "ping", expect "pong" within 5 s, report the round-trip time. A failure says in words
-- whether this machine has no vsock transport or nothing listens at that CID and port (nd.vsock's wording).
-- Also takes unix:PATH and tcp:HOST:PORT addresses, so it can be tried against vsock-pingpong --listen unix:/tmp/x.
local vsock = require "nd.vsock"

local function address(args)
  local t = args.target
  if t:match("^%d+$") then return string.format("vsock:%s:%d", t, args.port) end
  return t
end

return {
  name = "vsock-ping",
  description = "Ping the vsock-pingpong test enclave (CID [PORT]): expect pong, report the round-trip time",
  categories = { "enclave", "vsock" },
  args = {
    { name = "target", type = "string", positional = 1, required = true,
      help = "enclave CID (e.g. 16, see nitro-cli describe-enclaves), or an address vsock:CID:PORT | unix:PATH | tcp:HOST:PORT" },
    { name = "port", type = "number", positional = 2, default = 5000, help = "vsock port, with a CID" },
    { name = "timeout", type = "number", default = 5, help = "seconds for each exchange (connect, ping, pong)" },
    { name = "count", type = "number", default = 1, help = "how many pings to send" },
  },
  deadline = 120,
  steps = {
    { name = "ping", timeout = 100, required = true,
      run = function(s)
        local a = s.args
        local addr = address(a)
        local parsed, perr = vsock.parse(addr)
        if not parsed then
          s:finding{ code = "VSOCK_BAD_ADDRESS", severity = "fail", message = perr,
                     remediation = "give the enclave CID (a number) and optionally the port, e.g. `nitrodiag vsock-ping 16 5000`" }
          return
        end
        local rtts, replies = {}, {}
        for i = 1, math.max(1, math.floor(a.count)) do
          s:progress(string.format("ping %d/%d to %s", i, a.count, addr))
          local r, err, code = vsock.ping(addr, { timeout = a.timeout })
          if not r then
            local remediation
            if code == "ENODEV" or code == "EAFNOSUPPORT" then
              remediation = "run this on the Nitro parent instance (the host of the enclave), where vsock is available"
            elseif parsed.kind == "vsock" then
              remediation = "check that the enclave runs (`nitro-cli describe-enclaves`: State RUNNING, EnclaveCID " ..
                tostring(parsed.cid) .. ") and that its console shows `[enclave] vsock mode: listening`"
            end
            s:finding{ code = "VSOCK_PING_FAILED", severity = "fail", message = err, evidence = { addr .. ": " .. code },
                       remediation = remediation }
            return
          end
          s:log(string.format("%s: reply %q in %.2f ms", addr, r.reply, r.rtt_ms))
          rtts[#rtts + 1] = r.rtt_ms
          replies[#replies + 1] = r.reply
          if r.reply ~= "pong" then
            s:finding{ code = "VSOCK_BAD_REPLY", severity = "fail",
                       message = string.format("%s answered %q instead of \"pong\"", addr, r.reply),
                       evidence = { string.format("reply %q", r.reply) },
                       remediation = "something else listens on that port, or the enclave is not vsock-pingpong in vsock mode" }
            return
          end
        end
        table.sort(rtts)
        local msg
        if #rtts == 1 then
          msg = string.format("%s answered pong in %.2f ms", addr, rtts[1])
        else
          msg = string.format("%s answered pong %d times, round trip min %.2f / median %.2f / max %.2f ms",
            addr, #rtts, rtts[1], rtts[(#rtts + 1) // 2], rtts[#rtts])
        end
        s.data.rtt_ms = rtts
        s:finding{ code = "VSOCK_PONG", severity = "info", message = msg }
        s:ok(msg)
      end },
  },
}

-- nd.rules.vsock_proxy — causes in vsock-proxy's output (aws-nitro-enclaves-cli vsock_proxy/src: proxy.rs
-- "The given address and port are not allowed", "Could not bind to …", dns.rs "DNS lookup failed!") and in the
-- connection errors an enclave client sees when no proxy listens.
return { area = "vsock-proxy", rules = {
  { id = "proxy-not-allowed", finding = "VSOCK_PROXY_NOT_ALLOWED", confidence = 0.95,
    match = function(f)
      local l = f:line("The given address and port are not allowed") or f:line("[Nn]ot in the allow ?list")
      if l then return { vars = { remote = f.text:match("vsock%-proxy%s+%d+%s+(%S+%s+%d+)") or "the remote" }, evidence = { l } } end
    end },
  { id = "proxy-dns", finding = "VSOCK_PROXY_DNS", confidence = 0.9,
    match = function(f)
      local l = f:line("DNS lookup failed") or f:line("DNS resolution failed") or f:line("Unable to resolve allow listed host")
        or f:line("failed to lookup address information")
      if l then return { vars = { remote = l:match("host: \"?([%w%.%-]+)") or "the remote host" }, evidence = { l } } end
    end },
  { id = "proxy-bind", finding = "VSOCK_PROXY_BIND", confidence = 0.9,
    match = function(f)
      local l = f:line("Could not bind to")
      if l then return { evidence = { l } } end
    end },
  { id = "vsock-connect-failed", finding = "VSOCK_CONNECTION_REFUSED", confidence = 0.7,
    match = function(f)
      local l = f:line("Could not connect to vsock %d+[%.:]%d+") or f:line("dial vsock")
      if l then return { evidence = { l } } end
    end },
  { id = "vsock-refused", finding = "VSOCK_CONNECTION_REFUSED", confidence = 0.5,
    match = function(f)
      local l = (f:has("vsock") or f:has("VSOCK") or f:has("AF_VSOCK")) and (f:line("Connection refused") or f:line("ECONNREFUSED")
        or f:line("connection reset by peer"))
      if l and not f.code then return { evidence = { l } } end
    end },
} }

-- nd.rules.build — causes in build-enclave / docker / linuxkit output (E48, E49, E50, E51).
return { area = "image-build", rules = {
  { id = "docker-api-version", finding = "DOCKER_API_TOO_NEW", confidence = 0.9,
    match = function(f)
      local l = f:line("client version [%d%.]+ is too") or f:line("API version") or f:line("api version")
      if l and (f.code == "E50" or f.code == "E49" or f:has("docker") or f:has("Docker")) then return { evidence = { l } } end
    end },
  { id = "docker-not-running", finding = "DOCKER_NOT_RUNNING", confidence = 0.85,
    match = function(f)
      local l = f:line("Cannot connect to the Docker daemon") or f:line("docker.sock") and f:line("[Pp]ermission denied")
        or f:line("/var/run/docker.sock")
      if l then return { evidence = { l } } end
    end },
  { id = "docker-image-missing", finding = "DOCKER_IMAGE_NOT_FOUND", confidence = 0.7,
    match = function(f)
      local l = f:line("[Nn]o such image") or f:line("pull access denied") or f:line("manifest unknown")
        or f:line("Docker error: PullError") or f:line("Failed to pull docker image")
      if f.code == "E50" or l then
        return { vars = { image = f.text:match("docker%-uri%s+(%S+)") or f.text:match("[Nn]o such image: (%S+)") },
                 evidence = { f.root and f.root.headline, l }, confidence = l and 0.8 or 0.7 }
      end
    end },
  { id = "docker-build", finding = "DOCKER_BUILD_FAILED", confidence = 0.7,
    match = function(f)
      local l = f:line("Docker error: BuildError") or f:line("Failed to build docker image")
      -- docker's own words for a COPY/ADD source that is not in the build context (BuildKit: "failed to compute
      -- cache key: … \"<path>\": not found"; the classic builder: "COPY failed: file not found in build context or
      -- excluded by .dockerignore") and BuildKit's summary line
      local missing = f:line("failed to compute cache key.-not found") or f:line("COPY failed: ") or f:line("ADD failed: ")
      local solve = f:line("failed to solve")
      if f.code == "E49" or l or missing or solve then
        return { evidence = { f.root and f.root.headline, l, missing or solve }, confidence = (missing and not f.code) and 0.75 or nil }
      end
    end },
  { id = "linuxkit", finding = "LINUXKIT_BUILD_FAILED", confidence = 0.85,
    match = function(f)
      local l = f:line("linuxkit") and (f:line("[Ee]rror") or f:line("[Ff]ailed"))
      if f.code == "E48" or l then
        return { vars = { detail = (l or (f.root and f.root.headline) or ""):sub(1, 160) }, evidence = { f.root and f.root.headline, l } }
      end
    end },
} }

"""The APIs of editor extensions, answered by the same gateway and replicas as the OpenAI API.

* :mod:`.tabby` — Tabby's ``/v1/health``, ``/v1/completions`` (``segments``), ``/v1/events``,
  ``/v1beta/server_setting``, as called by ``tabby-agent`` (Tabby's VS Code, JetBrains, Vim
  extensions).
* :mod:`.infill` — llama.cpp server's ``/infill`` (llama.vim, llama.vscode).
* :mod:`.ollama` — Ollama's ``/api/generate``, ``/api/tags``, ``/api/show`` (Continue, Twinny).

Each answers malformed requests with its own API's error shape (:mod:`.errors`), builds its
prompt with :mod:`.prompt` and applies the editor stop rules of :mod:`coderig.serve.postprocess`.
"""

"""The gateway's own web pages: the playground (`/`, `/playground`) and the operator
dashboard (`/dashboard`). They are static files; the API calls they make carry the key the
user typed into the page, which never reaches the server any other way."""

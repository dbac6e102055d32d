"""OAuth2 for REST providers: clients, PKCE, grants, token refresh and token storage.

```python
from xcomm import CommManager
from xcomm.auth import RefreshGrant, TokenManager, load_google_credentials


async def main() -> None:
    user = load_google_credentials("token.json")      # an authorized-user file
    async with CommManager() as comm:
        tokens = TokenManager(RefreshGrant(comm.oauth(user.client), user.refresh_token))
        print(await tokens.token())
```

See docs/auth.md for obtaining credentials from Google and Microsoft.
"""

from xcomm.auth._client import (
    GOOGLE_AUTH_URI,
    GOOGLE_TOKEN_URI,
    OAuthClient,
    Token,
    code_challenge,
    make_code_verifier,
    make_state,
)
from xcomm.auth._endpoint import OAuthEndpoint, explain_grant_error, parse_token_response
from xcomm.auth._files import (
    AuthorizedUser,
    ServiceAccountKey,
    load_google_credentials,
    write_authorized_user,
)
from xcomm.auth._loopback import run_loopback_flow
from xcomm.auth._store import FileTokenStore
from xcomm.auth._tokens import (
    RefreshGrant,
    ServiceAccountGrant,
    TokenManager,
    TokenSource,
    TokenStore,
)

__all__ = [
    "GOOGLE_AUTH_URI",
    "GOOGLE_TOKEN_URI",
    "AuthorizedUser",
    "FileTokenStore",
    "OAuthClient",
    "OAuthEndpoint",
    "RefreshGrant",
    "ServiceAccountGrant",
    "ServiceAccountKey",
    "Token",
    "TokenManager",
    "TokenSource",
    "TokenStore",
    "code_challenge",
    "explain_grant_error",
    "load_google_credentials",
    "make_code_verifier",
    "make_state",
    "parse_token_response",
    "run_loopback_flow",
    "write_authorized_user",
]

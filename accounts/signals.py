from django.dispatch import Signal

# Sent by `POST /api/v1/auth/logout-all/` once every token of `user` is revoked (a lost phone):
# apps that bind something to the user's devices unbind it (notifications: no more pushes).
signed_out_everywhere = Signal()  # sender: the user's class; user=

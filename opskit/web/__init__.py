"""opskit inside the site: the Django-facing edge.

Everything that runs in the web workers lives here: the maintenance middleware, the backups
page in the admin (an unmanaged model, its admin, views and actions) and the settings
bridge. These modules import Django, as opskit.django_project does; the core modules never
import them. Django wants a few files at fixed places in the app, which stay one-line
shims: opskit/apps.py, opskit/models.py, opskit/admin.py, opskit/middleware.py,
opskit/migrations/ and the templates in opskit/templates/opskit/.
"""

#include "dashboard/assets.h"

namespace yard::dashboard_assets {

// Generated at build time from dashboard/index.html, app.js and style.css.
const char kIndexHtml[] =
#include "dashboard/index.html.inc"
    ;
const char kAppJs[] =
#include "dashboard/app.js.inc"
    ;
const char kStyleCss[] =
#include "dashboard/style.css.inc"
    ;

}  // namespace yard::dashboard_assets

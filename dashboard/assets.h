// The page's files, compiled in (CMakeLists.txt embeds each as a string).
#ifndef YARD_DASHBOARD_ASSETS_H_
#define YARD_DASHBOARD_ASSETS_H_

namespace yard::dashboard_assets {

extern const char kIndexHtml[];
extern const char kAppJs[];
extern const char kStyleCss[];

}  // namespace yard::dashboard_assets

#endif  // YARD_DASHBOARD_ASSETS_H_

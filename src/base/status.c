#include "base/status.h"

static const struct {
    const char *name;
    int exit_code;
    const char *text;
} status_table[G4Q_STATUS_COUNT] = {
#define G4Q_X_ROW(name, code, text) {#name, code, text},
    G4Q_STATUS_TABLE(G4Q_X_ROW)
#undef G4Q_X_ROW
};

const char *g4q_status_name(g4q_status s)
{
    return (unsigned)s < G4Q_STATUS_COUNT ? status_table[s].name : "G4Q_UNKNOWN_STATUS";
}

const char *g4q_status_text(g4q_status s)
{
    return (unsigned)s < G4Q_STATUS_COUNT ? status_table[s].text : "unknown status";
}

int g4q_status_exit_code(g4q_status s)
{
    return (unsigned)s < G4Q_STATUS_COUNT ? status_table[s].exit_code : 1;
}

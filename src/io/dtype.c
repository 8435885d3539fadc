#include "io/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[G4Q_DT_COUNT] = {
#define G4Q_X_DT(e, name, size) {name, size},
    G4Q_DTYPE_TABLE(G4Q_X_DT)
#undef G4Q_X_DT
};

const char *g4q_dtype_name(g4q_dtype dt)
{
    return (unsigned)dt < G4Q_DT_COUNT ? dtype_table[dt].name : "?";
}

size_t g4q_dtype_size(g4q_dtype dt)
{
    return (unsigned)dt < G4Q_DT_COUNT ? dtype_table[dt].size : 0;
}

int g4q_dtype_parse(const char *name)
{
    for (int i = 0; i < G4Q_DT_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0)
            return i;
    return -1;
}

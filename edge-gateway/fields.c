/* fields.c -- HTTP field-line sizes and checks of field values. */
#include "fields.h"

#include <string.h>

size_t gw_field_line_size(size_t name_len, size_t value_len)
{
	return name_len + 2 + value_len + 2;
}

bool gw_field_value_writable(const char *v)
{
	if (v == NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return true;
}

int gw_field_name_spaced(const char *name, unsigned i, char *out, size_t cap)
{
	size_t n = strlen(name), ws = 1;
	unsigned pattern = i;

	/* i enumerates 2 spellings of one character, 4 of two, 8 of three. */
	while (ws <= 3 && pattern >= (1u << ws)) {
		pattern -= 1u << ws;
		ws++;
	}
	if (ws > 3 || n + ws + 2 > cap)
		return -1;
	memcpy(out, name, n);
	for (size_t k = 0; k < ws; k++)
		out[n + k] = (pattern >> k) & 1u ? '\t' : ' ';
	out[n + ws] = ':';
	out[n + ws + 1] = '\0';
	return (int)(n + ws + 1);
}

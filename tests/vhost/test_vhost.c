#include "vhost.h"
int main(void){return 0;}
